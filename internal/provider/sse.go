package provider

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// maxSSELine bounds one SSE line (a single chunk of JSON).
const maxSSELine = 1 << 20

var errSSELineTooLong = errors.New("SSE line too long")

// sseReader reads the data of Server-Sent Events: "data:" lines are joined
// with "\n" and dispatched at a blank line; comments (":...") and other
// fields (event, id, retry) are skipped. CRLF and LF line endings are
// accepted.
type sseReader struct {
	r    *bufio.Reader
	line []byte
	// onLine is called after every line read (the idle timer).
	onLine func()
}

func newSSEReader(r io.Reader, onLine func()) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 32<<10), onLine: onLine}
}

// readLine returns the next line without its terminator, and whether it
// was terminated (false for a partial last line before EOF).
func (s *sseReader) readLine() ([]byte, bool, error) {
	s.line = s.line[:0]
	for {
		frag, err := s.r.ReadSlice('\n')
		s.line = append(s.line, frag...)
		if len(s.line) > maxSSELine {
			return nil, false, errSSELineTooLong
		}
		switch {
		case err == nil:
			if s.onLine != nil {
				s.onLine()
			}
			l := s.line[:len(s.line)-1]
			return bytes.TrimSuffix(l, []byte("\r")), true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(s.line) > 0:
			return bytes.TrimSuffix(s.line, []byte("\r")), false, nil
		default:
			return nil, false, err
		}
	}
}

// next returns the data of the next event. It returns io.EOF at a clean
// end of stream; pending data of complete lines is dispatched at EOF even
// without the final blank line, a partial last line is dropped (unless it
// is exactly "data: [DONE]").
func (s *sseReader) next() (string, error) {
	var data []byte
	have := false
	for {
		line, complete, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && have {
				return string(data), nil
			}
			return "", err
		}
		if !complete {
			if string(line) == "data: [DONE]" || string(line) == "data:[DONE]" {
				return "[DONE]", nil
			}
			if have {
				return string(data), nil
			}
			return "", fmt.Errorf("stream cut inside a line: %w", io.ErrUnexpectedEOF)
		}
		if len(line) == 0 {
			if have {
				return string(data), nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) != "data" {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if have {
			data = append(data, '\n')
		}
		data = append(data, value...)
		have = true
	}
}
