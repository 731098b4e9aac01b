package sanitize

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// RunJSONL reads lines of the form {"text": "..."} from r and writes one
// JSON Verdict line per input line to w, in order. A line that is not such an
// object gets a "block" verdict with rule "input.bad_json"; a line too long
// to hold a MaxBytes text gets "limit.max_bytes". Neither stops the run. It
// returns ctx's error if cancelled, or the first read or write error.
func RunJSONL(ctx context.Context, s *Sanitizer, r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	// JSON escaping can grow a text up to 6x (\u00XX); allow for it.
	maxLine := 6*s.cfg.MaxBytes + 1024
	var line []byte
	for {
		if err := ctx.Err(); err != nil {
			return errors.Join(err, bw.Flush())
		}
		var tooLong bool
		var err error
		line, tooLong, err = readLine(br, line[:0], maxLine)
		if len(line) == 0 && !tooLong && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return errors.Join(fmt.Errorf("sanitize: read: %w", err), bw.Flush())
		}
		var v Verdict
		if tooLong {
			v = reject(RuleMaxBytes, fmt.Sprintf("line longer than %d bytes", maxLine))
		} else {
			v = s.checkLine(line)
		}
		if werr := enc.Encode(v); werr != nil {
			return fmt.Errorf("sanitize: write: %w", werr)
		}
		if err == io.EOF {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sanitize: write: %w", err)
	}
	return nil
}

func (s *Sanitizer) checkLine(line []byte) Verdict {
	var in struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(line, &in); err != nil {
		return reject(RuleBadJSON, "line is not a JSON object: "+jsonErrKind(err))
	}
	if in.Text == nil {
		return reject(RuleBadJSON, `line has no "text" string`)
	}
	return s.Check(*in.Text)
}

// jsonErrKind describes a decoding error without echoing the input.
func jsonErrKind(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	return "cannot decode"
}

// readLine reads one line (without its \n or \r\n) into buf. If the line is
// longer than limit it is consumed and discarded and tooLong is set.
func readLine(br *bufio.Reader, buf []byte, limit int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > limit+2 {
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if n := len(buf); n > 0 && buf[n-1] == '\n' {
			buf = buf[:n-1]
			if n := len(buf); n > 0 && buf[n-1] == '\r' {
				buf = buf[:n-1]
			}
		}
		return buf, tooLong, err
	}
}
