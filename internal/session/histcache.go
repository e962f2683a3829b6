package session

import (
	"slices"
	"sync"

	"github.com/agentd/agentd/internal/provider"
)

// histCache keeps recent sessions' model history in memory so a turn does
// not read it back from SQLite (a read that costs more than the rest of the
// path to the first delta once it competes with a write). SQLite stays the
// truth: entries are filled from it and dropped whenever unsure.
type histCache struct {
	maxBytes int

	// mu guards all fields below.
	mu      sync.Mutex
	entries map[string]*histEntry
	bytes   int
	// seq counts changes; changed[id] is the seq of id's last change, and
	// floor stands in for every change forgotten when changed was reset. A
	// load may be cached only if its session did not change since its get.
	seq     uint64
	changed map[string]uint64
	floor   uint64
}

type histEntry struct {
	msgs  []provider.Message
	bytes int
}

// maxCachedMessages: longer histories are read from the database each turn.
const maxCachedMessages = 1000

func newHistCache(maxBytes int) *histCache {
	return &histCache{maxBytes: maxBytes, entries: map[string]*histEntry{}, changed: map[string]uint64{}}
}

func msgBytes(m provider.Message) int {
	n := len(m.Content) + len(m.ToolCallID) + 64
	for _, c := range m.ToolCalls {
		n += len(c.ID) + len(c.Name) + len(c.Arguments)
	}
	return n
}

// get returns the cached history (clipped: callers that append copy it) or
// the token to pass to put after a miss.
func (h *histCache) get(id string) ([]provider.Message, uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.entries[id]; ok {
		return slices.Clip(e.msgs), 0, true
	}
	return nil, h.seq, false
}

// touch records a change of id.
func (h *histCache) touch(id string) {
	h.seq++
	h.changed[id] = h.seq
}

// put stores a history read from the database, unless the session changed
// since get.
func (h *histCache) put(id string, token uint64, msgs []provider.Message) {
	if len(msgs) > maxCachedMessages {
		return
	}
	size := 0
	for _, m := range msgs {
		size += msgBytes(m)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if max(h.changed[id], h.floor) > token || h.entries[id] != nil || size > h.maxBytes/4 {
		return
	}
	h.makeRoom(size)
	h.entries[id] = &histEntry{msgs: slices.Clip(msgs), bytes: size}
	h.bytes += size
}

// appendTurn adds a finished turn's messages (after they are committed).
func (h *histCache) appendTurn(id string, msgs []provider.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.touch(id)
	e := h.entries[id]
	if e == nil {
		return
	}
	size := 0
	for _, m := range msgs {
		size += msgBytes(m)
	}
	if len(e.msgs)+len(msgs) > maxCachedMessages || e.bytes+size > h.maxBytes/4 {
		h.dropLocked(id)
		return
	}
	h.makeRoom(size)
	if h.entries[id] == nil { // evicted to make room
		return
	}
	e.msgs = append(e.msgs, msgs...)
	e.bytes += size
	h.bytes += size
}

// drop forgets a session (after its history changed in the database).
func (h *histCache) drop(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.touch(id)
	h.dropLocked(id)
}

func (h *histCache) dropLocked(id string) {
	if e := h.entries[id]; e != nil {
		h.bytes -= e.bytes
		delete(h.entries, id)
	}
}

// makeRoom evicts arbitrary entries (map order) until size fits.
func (h *histCache) makeRoom(size int) {
	for id := range h.entries {
		if h.bytes+size <= h.maxBytes {
			break
		}
		h.dropLocked(id)
	}
	if len(h.changed) > maxMeta { // changes of long-idle sessions
		clear(h.changed)
		h.floor = h.seq
	}
}

// modelView filters a turn's messages the way the history query does.
func modelView(msgs []provider.Message, failed bool) []provider.Message {
	if failed {
		return nil
	}
	out := make([]provider.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.Role == provider.RoleAssistant && m.Content == "" && len(m.ToolCalls) == 0 {
			continue
		}
		out = append(out, m)
	}
	return out
}
