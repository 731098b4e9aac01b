package replay

import "encoding/json"

// ConversationID returns the string value of the top-level
// "conversation_id" member of a JSON object, or "" if there is none, it is
// not a string, or data is not a JSON object.
//
// It scans only as far as the member (the encoders in messages write it
// third, so typically within the first 60 bytes) and does not allocate
// unless the value contains escapes. Unlike encoding/json it matches the
// key exactly (case-sensitively) and takes the first occurrence.
func ConversationID(data []byte) string { return topString(data, "conversation_id") }

// User returns the top-level "user" member of a JSON object, as
// ConversationID does (every turn event carries it, fourth).
func User(data []byte) string { return topString(data, "user") }

func topString(data []byte, key string) string {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return ""
	}
	i++
	for {
		i = skipWS(data, i)
		if i >= len(data) || data[i] != '"' {
			return "" // '}' (not found) or malformed
		}
		kEnd, kEsc := scanString(data, i)
		if kEnd < 0 {
			return ""
		}
		match := false
		if !kEsc {
			match = string(data[i+1:kEnd-1]) == key
		} else {
			var k string
			match = json.Unmarshal(data[i:kEnd], &k) == nil && k == key
		}
		i = skipWS(data, kEnd)
		if i >= len(data) || data[i] != ':' {
			return ""
		}
		i = skipWS(data, i+1)
		if match {
			if i >= len(data) || data[i] != '"' {
				return ""
			}
			end, esc := scanString(data, i)
			if end < 0 {
				return ""
			}
			if !esc {
				return string(data[i+1 : end-1])
			}
			var v string
			if json.Unmarshal(data[i:end], &v) != nil {
				return ""
			}
			return v
		}
		i = skipValue(data, i)
		if i < 0 {
			return ""
		}
		i = skipWS(data, i)
		if i >= len(data) || data[i] != ',' {
			return ""
		}
		i++
	}
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index just past the JSON string starting at
// data[i] == '"', and whether it contains escapes; -1 if unterminated.
func scanString(data []byte, i int) (end int, esc bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '"':
			return j + 1, esc
		case '\\':
			esc = true
			j++ // skip the escaped byte (\" or \\ or the u of \uXXXX)
		}
	}
	return -1, esc
}

// skipValue returns the index just past the JSON value at data[i], or -1.
// It checks nesting and strings, not the full grammar.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		end, _ := scanString(data, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			case '"':
				end, _ := scanString(data, i)
				if end < 0 {
					return -1
				}
				i = end
				continue
			}
			i++
		}
		return -1
	default: // number, true, false, null
		j := i
		for j < len(data) {
			switch data[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return -1
				}
				return j
			}
			j++
		}
		return -1
	}
}
