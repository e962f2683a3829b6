package vault

import (
	"path"
	"sort"
	"strings"
	"sync"
)

// names resolves link targets to note paths the way Obsidian does:
// case-insensitively, ".md" optional; a target with a folder matches the
// path from the vault root, then relative to the linking note, then any
// note whose path ends with it; a bare name matches basenames. When several
// notes match, the one closest to the vault root wins, then the
// alphabetically first path.
type names struct {
	mu     sync.RWMutex        // mu guards byPath and byBase
	byPath map[string]string   // lower(path without .md) → path
	byBase map[string][]string // lower(basename without .md) → paths, best first
}

func newNames() *names {
	return &names{byPath: map[string]string{}, byBase: map[string][]string{}}
}

func stem(p string) string { return strings.TrimSuffix(p, ".md") }

// baseKey is the key a note or a link target is filed under.
func baseKey(p string) string { return strings.ToLower(path.Base(stem(p))) }

func (n *names) add(p string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := strings.ToLower(stem(p))
	if _, ok := n.byPath[key]; ok {
		return
	}
	n.byPath[key] = p
	b := baseKey(p)
	list := append(n.byBase[b], p)
	sort.Slice(list, func(i, j int) bool { return closer(list[i], list[j]) })
	n.byBase[b] = list
}

func (n *names) remove(p string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := strings.ToLower(stem(p))
	if n.byPath[key] != p {
		return
	}
	delete(n.byPath, key)
	b := baseKey(p)
	list := n.byBase[b]
	for i, q := range list {
		if q == p {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(n.byBase, b)
	} else {
		n.byBase[b] = list
	}
}

// replace takes over the tables of fresh.
func (n *names) replace(fresh *names) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.byPath, n.byBase = fresh.byPath, fresh.byBase
}

// closer orders paths: fewer folders first, then alphabetically.
func closer(a, b string) bool {
	da, db := strings.Count(a, "/"), strings.Count(b, "/")
	if da != db {
		return da < db
	}
	return a < b
}

// resolve returns the note path a link in source points to, or false when
// no note matches (the link is unresolved). An empty target is the source
// itself ([[#Heading]]).
func (n *names) resolve(source, target string) (string, bool) {
	t := strings.TrimSpace(target)
	if t == "" {
		return source, true
	}
	t = strings.ToLower(strings.TrimPrefix(stem(t), "/"))
	n.mu.RLock()
	defer n.mu.RUnlock()
	if !strings.Contains(t, "/") {
		if list := n.byBase[t]; len(list) > 0 {
			return list[0], true
		}
		return "", false
	}
	if p, ok := n.byPath[path.Clean(t)]; ok {
		return p, true
	}
	if rel := path.Join(path.Dir(strings.ToLower(source)), t); !strings.HasPrefix(rel, "../") {
		if p, ok := n.byPath[rel]; ok {
			return p, true
		}
	}
	suffix := "/" + strings.TrimPrefix(path.Clean(t), "./")
	for _, p := range n.byBase[path.Base(t)] { // best first
		if strings.HasSuffix(strings.ToLower(stem(p)), suffix) {
			return p, true
		}
	}
	return "", false
}

// has reports whether p is an indexed note.
func (n *names) has(p string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.byPath[strings.ToLower(stem(p))] == p
}

// all returns every known path (unordered).
func (n *names) all() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]string, 0, len(n.byPath))
	for _, p := range n.byPath {
		out = append(out, p)
	}
	return out
}
