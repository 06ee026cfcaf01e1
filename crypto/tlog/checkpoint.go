package tlog

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Checkpoint wire format: C2SP tlog-checkpoint note text, in the Moat
// profile of docs/spec/tlog.md §Checkpoints.

const (
	// MaxOriginSize is the longest origin Moat accepts, in bytes: the
	// ML-DSA-44 cosigned message encodes it with a one-byte length.
	MaxOriginSize = 255
	// MaxNoteSize bounds a signed note (checkpoint with all its signature
	// lines), checked before any parsing. It leaves room for the log's two
	// lines and 16 ML-DSA-44 cosignatures, as signed-note requires.
	MaxNoteSize = 256 << 10
	// MaxTreeSize is the largest tree size and the largest timestamp Moat
	// accepts, 2^63-1, so that both fit an int64.
	MaxTreeSize = math.MaxInt64
)

// Checkpoint is the note text of a C2SP checkpoint: the log's origin, the
// tree size and its RFC 6962 root hash, and optional extension lines.
type Checkpoint struct {
	Origin     string
	Size       uint64
	Root       Hash
	Extensions []string // opaque; each non-empty; NOT RECOMMENDED
}

// ParseCheckpoint parses checkpoint note text (without signatures). It is
// strict: every line ends in a newline; the origin is a valid note key name
// of at most MaxOriginSize bytes; the size is decimal without leading zeroes
// and at most MaxTreeSize; the root is canonical padded base64 of 32 bytes;
// extension lines are non-empty; there are no control characters. A parsed
// checkpoint marshals back to exactly text.
func ParseCheckpoint(text []byte) (*Checkpoint, error) {
	c, err := parseCheckpoint(text)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrMalformed, err)
	}
	return c, nil
}

func parseCheckpoint(text []byte) (*Checkpoint, error) {
	if len(text) > MaxNoteSize {
		return nil, errors.New("too large")
	}
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return nil, errors.New("does not end in a newline")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return nil, errors.New("fewer than three lines")
	}
	for _, l := range lines {
		if err := checkLine(l); err != nil {
			return nil, err
		}
	}
	c := &Checkpoint{Origin: lines[0]}
	if err := checkOrigin(c.Origin); err != nil {
		return nil, err
	}
	var err error
	if c.Size, err = parseDecimal([]byte(lines[1])); err != nil {
		return nil, fmt.Errorf("tree size: %v", err)
	}
	if c.Root, err = decodeHash([]byte(lines[2])); err != nil {
		return nil, fmt.Errorf("root: %v", err)
	}
	if len(lines) > 3 {
		c.Extensions = lines[3:]
	}
	return c, nil
}

// Marshal returns the note text of c. It fails for a checkpoint that
// ParseCheckpoint would reject.
func (c *Checkpoint) Marshal() ([]byte, error) {
	if err := checkOrigin(c.Origin); err != nil {
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrMalformed, err)
	}
	if c.Size > MaxTreeSize {
		return nil, fmt.Errorf("%w: checkpoint: tree size too large", ErrMalformed)
	}
	b := make([]byte, 0, len(c.Origin)+70)
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, c.Size, 10)
	b = append(b, '\n')
	b = append(b, c.Root.String()...)
	b = append(b, '\n')
	for _, e := range c.Extensions {
		if err := checkLine(e); err != nil || e == "" {
			return nil, fmt.Errorf("%w: checkpoint: bad extension line", ErrMalformed)
		}
		b = append(b, e...)
		b = append(b, '\n')
	}
	if len(b) > MaxNoteSize {
		return nil, fmt.Errorf("%w: checkpoint: too large", ErrMalformed)
	}
	return b, nil
}

// checkLine checks one line of a checkpoint: non-empty, valid UTF-8,
// no control characters (signed-note §Format).
func checkLine(l string) error {
	if l == "" {
		return errors.New("empty line")
	}
	if !utf8.ValidString(l) {
		return errors.New("invalid UTF-8")
	}
	for _, r := range l {
		if r < 0x20 {
			return errors.New("control character")
		}
	}
	return nil
}

// checkOrigin checks that an origin can also be the log's note key name
// (docs/spec/tlog.md §Origin): non-empty, at most MaxOriginSize bytes,
// valid UTF-8 without control characters, Unicode spaces or plus signs.
func checkOrigin(o string) error {
	if len(o) > MaxOriginSize {
		return errors.New("origin too long")
	}
	if !validKeyName(o) {
		return errors.New("origin is not a valid key name")
	}
	return nil
}

// validKeyName reports whether name is a valid signed-note key name, with
// the same rule as golang.org/x/mod/sumdb/note plus no control characters.
func validKeyName(name string) bool {
	return name != "" && checkLine(name) == nil &&
		strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// parseDecimal parses an ASCII decimal with no leading zeroes (unless the
// value is 0), at most MaxTreeSize.
func parseDecimal(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, errors.New("not a decimal")
	}
	if b[0] == '0' && len(b) > 1 {
		return 0, errors.New("leading zero")
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errors.New("not a decimal")
		}
		n = n*10 + uint64(c-'0') // 19 digits cannot overflow uint64
	}
	if n > MaxTreeSize {
		return 0, errors.New("too large")
	}
	return n, nil
}

// splitNote splits a signed note into its text (with the final newline)
// and its signature block, as signed-note §Format does: at the last blank
// line. It also checks the size, UTF-8 and control-character rules.
func splitNote(msg []byte) (text, sigs []byte, err error) {
	if len(msg) > MaxNoteSize {
		return nil, nil, fmt.Errorf("%w: note too large", ErrMalformed)
	}
	if !utf8.Valid(msg) {
		return nil, nil, fmt.Errorf("%w: note is not UTF-8", ErrMalformed)
	}
	for _, c := range msg {
		if c < 0x20 && c != '\n' {
			return nil, nil, fmt.Errorf("%w: control character in note", ErrMalformed)
		}
	}
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, nil, fmt.Errorf("%w: note has no signature block", ErrMalformed)
	}
	text, sigs = msg[:i+1], msg[i+2:]
	if len(sigs) == 0 || sigs[len(sigs)-1] != '\n' {
		return nil, nil, fmt.Errorf("%w: note has no signature lines", ErrMalformed)
	}
	return text, sigs, nil
}

// checkpointOfNote parses the checkpoint in a signed note without
// verifying any signature.
func checkpointOfNote(msg []byte) (*Checkpoint, error) {
	text, _, err := splitNote(msg)
	if err != nil {
		return nil, err
	}
	return ParseCheckpoint(text)
}
