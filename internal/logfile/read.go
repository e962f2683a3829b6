package logfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Entry is one log record read back: time, level, msg, component and the
// record's other fields.
type Entry map[string]any

// Time is the entry's time (zero when it has none).
func (e Entry) Time() time.Time {
	s, _ := e["time"].(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// Query selects entries.
type Query struct {
	Lines     int        // the newest Lines entries that match
	Level     slog.Level // at least this level
	Component string     // "" for all; "agentd" is agentd.log's records without one
	Since     time.Time  // zero for no bound
}

// chunk is how much of a file is read at a time, from the end.
const chunk = 64 << 10

// MaxScan bounds the bytes one query reads over all files, so a filter that
// matches nothing cannot make a request read gigabytes.
const MaxScan = 32 << 20

// Read returns the newest entries matching q from the logs in dir
// (agentd.log, JSON lines, and bridge-<name>.log, slog text lines or plain
// plugin output, with their rotated files), oldest first. Files are read
// backwards a chunk at a time, never whole.
func Read(dir string, q Query) ([]Entry, error) {
	type source struct{ path, component string }
	var srcs []source
	if q.Component == "" || !strings.HasPrefix(q.Component, "bridge-") {
		srcs = append(srcs, source{filepath.Join(dir, "agentd.log"), ""})
	}
	bridges, _ := filepath.Glob(filepath.Join(dir, "bridge-*.log"))
	for _, b := range bridges {
		c := strings.TrimSuffix(filepath.Base(b), ".log")
		if q.Component == "" || q.Component == c {
			srcs = append(srcs, source{b, c})
		}
	}
	budget := int64(MaxScan)
	var all []Entry
	for _, s := range srcs {
		var got []Entry
		// The current file, then the rotated ones, newest first.
		for i := 0; i <= Backups && len(got) < q.Lines && budget > 0; i++ {
			p := s.path
			if i > 0 {
				p += "." + strconv.Itoa(i)
			}
			done, err := readBack(p, &budget, func(line []byte) bool {
				e := parseLine(line, s.component)
				if !q.Since.IsZero() {
					if t := e.Time(); !t.IsZero() && t.Before(q.Since) {
						return false // older than since: so is everything before it
					}
				}
				if matches(e, q) {
					got = append(got, e)
				}
				return len(got) < q.Lines
			})
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			if done {
				break
			}
		}
		// A line without a time (plugin output) sorts with the record
		// before it in its file.
		var last any
		for i := len(got) - 1; i >= 0; i-- {
			if got[i].Time().IsZero() && last != nil {
				got[i]["time"] = last
			}
			last = got[i]["time"]
		}
		slices.Reverse(got) // oldest first, so equal times keep file order
		all = append(all, got...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time().Before(all[j].Time()) })
	if len(all) > q.Lines {
		all = all[len(all)-q.Lines:]
	}
	return all, nil
}

func matches(e Entry, q Query) bool {
	if q.Component != "" && e["component"] != q.Component {
		return false
	}
	var lvl slog.Level
	s, _ := e["level"].(string)
	if lvl.UnmarshalText([]byte(s)) != nil {
		lvl = slog.LevelInfo
	}
	return lvl >= q.Level
}

// readBack calls fn with each line of path from the last to the first
// until fn returns false (done is then true) or the scan budget is spent.
func readBack(path string, budget *int64, fn func([]byte) bool) (done bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	off := fi.Size()
	var tail []byte // the start of a line whose beginning is in the next chunk back
	buf := make([]byte, chunk)
	for off > 0 && *budget > 0 {
		n := int64(chunk)
		if off < n {
			n = off
		}
		off -= n
		*budget -= n
		if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return false, err
		}
		// The first piece may continue in the chunk before this one.
		parts := bytes.Split(append(append([]byte{}, buf[:n]...), tail...), []byte("\n"))
		for i := len(parts) - 1; i >= 1; i-- {
			if line := bytes.TrimSpace(parts[i]); len(line) > 0 && !fn(line) {
				return true, nil
			}
		}
		data := parts[0]
		tail = data
		if len(tail) > 1<<20 {
			tail = tail[len(tail)-1<<20:] // one absurd line must not grow memory
		}
	}
	if line := bytes.TrimSpace(tail); off == 0 && len(line) > 0 && !fn(line) {
		return true, nil
	}
	return false, nil
}

// parseLine reads a JSON record (agentd.log), an slog text record
// (key=value …) or, failing both, a plain line of plugin output.
func parseLine(line []byte, component string) Entry {
	e := Entry{}
	if line[0] == '{' && json.Unmarshal(line, &e) == nil {
		if _, ok := e["component"]; !ok {
			e["component"] = "agentd"
		}
		if component != "" {
			e["component"] = component
		}
		return e
	}
	e = parseText(string(line))
	if e == nil {
		e = Entry{"level": "INFO", "msg": string(line)}
	}
	if component == "" {
		component = "agentd"
	}
	e["component"] = component
	return e
}

// parseText parses slog's TextHandler output; nil if line is not one.
func parseText(line string) Entry {
	if !strings.HasPrefix(line, "time=") {
		return nil
	}
	e := Entry{}
	for line != "" {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			return nil
		}
		key, rest := line[:eq], line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			// A quoted value ends at the first unescaped quote.
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				return nil
			}
			v, err := strconv.Unquote(rest[:end+1])
			if err != nil {
				return nil
			}
			val, rest = v, rest[end+1:]
		} else {
			sp := strings.IndexByte(rest, ' ')
			if sp < 0 {
				sp = len(rest)
			}
			val, rest = rest[:sp], rest[sp:]
		}
		e[key] = val
		line = strings.TrimLeft(rest, " ")
	}
	return e
}
