package firewall

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
)

// jsonlCall is one input line of RunJSONL.
type jsonlCall struct {
	Tool      string          `json:"tool"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// RunJSONL reads one call per line from r, {"tool":"name","arguments":{...}}
// (arguments may also be a JSON string holding the object, as in the
// OpenAI API, and "name" is accepted for "tool"), and writes one verdict
// per line to w, in order: {"verdict":"allow|block","rule":"...","reason":"..."}.
// A line that is not such an object gets a block with rule
// "input.bad_json"; a line longer than the firewall's MaxArgBytes plus
// 4 KiB gets "args.too_large". Blank lines are skipped. It stops at the end
// of r, on a read or write error, or when ctx is done, and returns ctx's
// error in that case. It is what `agentbus firewall` runs.
func RunJSONL(ctx context.Context, f *Firewall, r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	limit := f.cfg.MaxArgBytes + 4<<10
	for {
		if err := ctx.Err(); err != nil {
			bw.Flush()
			return err
		}
		line, tooLong, err := readLine(br, limit)
		if len(line) > 0 || tooLong {
			var v Verdict
			if tooLong {
				v = block(RuleArgsTooLarge, "input line longer than %d bytes", limit)
			} else {
				v = f.checkLine(line)
			}
			if line = bytes.TrimSpace(line); len(line) > 0 || tooLong {
				if werr := enc.Encode(v); werr != nil {
					return werr
				}
			}
		}
		if err == io.EOF {
			return bw.Flush()
		}
		if err != nil {
			bw.Flush()
			return err
		}
		if br.Buffered() == 0 {
			// flush before blocking on more input (interactive use)
			if werr := bw.Flush(); werr != nil {
				return werr
			}
		}
	}
}

// readLine returns the next line without its newline; lines longer than
// limit are consumed and reported as tooLong.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		chunk, e := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > limit {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(e, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), tooLong, e
	}
}

func (f *Firewall) checkLine(line []byte) Verdict {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Verdict{}
	}
	var in jsonlCall
	if err := json.Unmarshal(line, &in); err != nil {
		return block(RuleBadInput, "line is not a JSON object: %v", err)
	}
	name := in.Tool
	if name == "" {
		name = in.Name
	}
	if name == "" {
		return block(RuleBadInput, `line has no "tool"`)
	}
	args := bytes.TrimSpace(in.Arguments)
	if len(args) > 0 && args[0] == '"' {
		var s string
		if err := json.Unmarshal(args, &s); err != nil {
			return block(RuleBadInput, "arguments string: %v", err)
		}
		args = []byte(s)
	}
	if string(args) == "null" {
		args = nil
	}
	return f.Check(Call{Name: name, Arguments: string(args)})
}
