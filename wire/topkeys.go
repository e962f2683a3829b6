package wire

// topKeys is the top-level keys of a JSON object and their raw values, as
// one scan finds them. The scan is hand-written because encoding/json has
// no way to list an object's keys without allocating a map and a copy of
// every value, which cost more than decoding the frame itself; it only
// needs to be right for valid JSON, since Decode trusts it only when
// encoding/json then accepts the same bytes.
type topKeys struct {
	n    int
	kv   [12]keyValue // a frame has a handful of fields
	more []keyValue
}

type keyValue struct {
	key, value []byte
}

// get returns the raw value of key (the last one, as encoding/json
// keeps); keys are matched exactly, as the map of decodeSlow does.
func (k *topKeys) get(key string) ([]byte, bool) {
	for i := len(k.more) - 1; i >= 0; i-- {
		if string(k.more[i].key) == key {
			return k.more[i].value, true
		}
	}
	for i := k.n - 1; i >= 0; i-- {
		if string(k.kv[i].key) == key {
			return k.kv[i].value, true
		}
	}
	return nil, false
}

func (k *topKeys) add(key, value []byte) {
	if k.n < len(k.kv) {
		k.kv[k.n] = keyValue{key, value}
		k.n++
		return
	}
	k.more = append(k.more, keyValue{key, value})
}

// scan reads data as one object; false means it is not one this scan
// reads (not an object, a key with an escape, anything malformed).
func (k *topKeys) scan(data []byte) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		end := skipString(data, i)
		if end < 0 {
			return false
		}
		key := data[i+1 : end-1]
		for _, c := range key {
			if c == '\\' {
				return false // an escaped key: rare, decodeSlow unquotes it
			}
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		vend := skipValue(data, i)
		if vend < 0 {
			return false
		}
		k.add(key, data[i:vend])
		i = skipSpace(data, vend)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at data[i]
// (a quote), or -1.
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index just past the value starting at data[i], or
// -1. Nested objects and arrays are skipped by counting brackets outside
// strings: enough for valid JSON, which is all the scan's result is used for.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end := skipString(data, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}
