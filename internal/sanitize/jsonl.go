package sanitize

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// JSONLOptions change what RunJSONL does. The zero value judges every text
// as client input and prints the verdicts.
type JSONLOptions struct {
	// Results judges every text as a tool result ([Sanitizer.CheckResult]):
	// the result thresholds and size limit.
	Results bool
	// Explain adds the text of the deciding passage to each verdict
	// ("passage.text"), for an operator reading why a text was judged so.
	Explain bool
}

// explained is a Verdict whose passage carries its text.
type explained struct {
	Verdict
	Passage *explainedPassage `json:"passage,omitempty"`
}

type explainedPassage struct {
	Passage
	Text string `json:"text"`
}

// RunJSONL reads lines of the form {"text": "..."} from r and writes one
// JSON Verdict line per input line to w, in order. A line that is not such an
// object gets a "block" verdict with rule "input.bad_json"; a line too long
// to hold a text of the size limit gets "limit.max_bytes". Neither stops the
// run. It returns ctx's error if cancelled, or the first read or write error.
func RunJSONL(ctx context.Context, s *Sanitizer, r io.Reader, w io.Writer, opts JSONLOptions) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	lim := &s.input
	if opts.Results {
		lim = &s.result
	}
	// JSON escaping can grow a text up to 6x (\u00XX); allow for it.
	maxLine := 6*lim.maxBytes + 1024
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
		var text string
		if tooLong {
			v = reject(RuleMaxBytes, fmt.Sprintf("line longer than %d bytes", maxLine))
		} else {
			v, text = s.checkLine(line, lim)
		}
		var out any = v
		if opts.Explain && v.Passage != nil {
			p := *v.Passage
			out = explained{Verdict: v, Passage: &explainedPassage{Passage: p, Text: text[min(p.Start, len(text)):min(p.End, len(text))]}}
		}
		if werr := enc.Encode(out); werr != nil {
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

func (s *Sanitizer) checkLine(line []byte, lim *limits) (Verdict, string) {
	var in struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(line, &in); err != nil {
		return reject(RuleBadJSON, "line is not a JSON object: "+jsonErrKind(err)), ""
	}
	if in.Text == nil {
		return reject(RuleBadJSON, `line has no "text" string`), ""
	}
	return s.check(*in.Text, lim), *in.Text
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
