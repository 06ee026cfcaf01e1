package tlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moat-im/moat/internal/pqc"
)

// Cosignatures: C2SP tlog-cosignature (docs/spec/tlog.md §Cosignatures).
// A cosignature is a note signature line
//
//	— <name> base64(key ID || timestamp || signature)
//
// with an 8-byte big-endian POSIX timestamp and a 64-byte Ed25519 or
// 2420-byte ML-DSA-44 signature.

// Cosignature is one witness cosignature line.
type Cosignature struct {
	Name      string
	KeyID     uint32
	Timestamp uint64 // POSIX seconds, at most MaxTreeSize (2^63-1)
	Signature []byte // 64 bytes (Ed25519) or 2420 bytes (ML-DSA-44)
}

// Time returns the timestamp as a time.Time.
func (c *Cosignature) Time() time.Time { return time.Unix(int64(c.Timestamp), 0) }

const sigLinePrefix = "— " // U+2014 EM DASH, space

// ParseCosignature parses exactly one signature line, with its final
// newline, as a cosignature. It is strict: a valid key name, canonical
// padded base64, a timestamp at most 2^63-1 and a signature of one of the
// two sizes. It does not verify the signature.
func ParseCosignature(line []byte) (*Cosignature, error) {
	c, err := parseCosignature(line)
	if err != nil {
		return nil, fmt.Errorf("%w: cosignature: %v", ErrMalformed, err)
	}
	return c, nil
}

func parseCosignature(line []byte) (*Cosignature, error) {
	if len(line) > MaxNoteSize {
		return nil, errors.New("too large")
	}
	s, ok := strings.CutPrefix(string(line), sigLinePrefix)
	if !ok {
		return nil, errors.New("no em dash")
	}
	s, ok = strings.CutSuffix(s, "\n")
	if !ok || strings.Contains(s, "\n") {
		return nil, errors.New("not one line")
	}
	name, b64, ok := strings.Cut(s, " ")
	if !ok || !validKeyName(name) || len(name) > MaxWitnessNameSize {
		return nil, errors.New("bad key name")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || base64.StdEncoding.EncodeToString(raw) != b64 {
		return nil, errors.New("not canonical base64")
	}
	if n := len(raw) - 12; n != ed25519.SignatureSize && n != pqc.MLDSA44SignatureSize {
		return nil, errors.New("wrong length")
	}
	c := &Cosignature{
		Name:      name,
		KeyID:     binary.BigEndian.Uint32(raw),
		Timestamp: binary.BigEndian.Uint64(raw[4:]),
		Signature: raw[12:],
	}
	if c.Timestamp > MaxTreeSize {
		return nil, errors.New("timestamp exceeds 2^63-1")
	}
	return c, nil
}

// Marshal returns the signature line, with its final newline.
func (c *Cosignature) Marshal() ([]byte, error) {
	if !validKeyName(c.Name) || len(c.Name) > MaxWitnessNameSize || c.Timestamp > MaxTreeSize ||
		(len(c.Signature) != ed25519.SignatureSize && len(c.Signature) != pqc.MLDSA44SignatureSize) {
		return nil, fmt.Errorf("%w: cosignature", ErrMalformed)
	}
	raw := make([]byte, 12, 12+len(c.Signature))
	binary.BigEndian.PutUint32(raw, c.KeyID)
	binary.BigEndian.PutUint64(raw[4:], c.Timestamp)
	raw = append(raw, c.Signature...)
	b := make([]byte, 0, len(sigLinePrefix)+len(c.Name)+1+base64.StdEncoding.EncodedLen(len(raw))+1)
	b = append(b, sigLinePrefix...)
	b = append(b, c.Name...)
	b = append(b, ' ')
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '\n'), nil
}

// ParseCosignatures parses an add-checkpoint response body: one or more
// cosignature lines.
func ParseCosignatures(body []byte) ([]*Cosignature, error) {
	if len(body) == 0 || len(body) > MaxNoteSize || body[len(body)-1] != '\n' {
		return nil, fmt.Errorf("%w: cosignature lines", ErrMalformed)
	}
	var out []*Cosignature
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		c, err := ParseCosignature(body[:i+1])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		body = body[i+1:]
	}
	return out, nil
}

// cosignatureV1Message is the Ed25519 cosignature/v1 signed message:
// "cosignature/v1\n", "time <timestamp>\n", then the checkpoint note text.
func cosignatureV1Message(text []byte, ts uint64) []byte {
	m := make([]byte, 0, len(cosigV1Header)+len(cosigV1Time)+21+len(text))
	m = append(m, cosigV1Header...)
	m = append(m, cosigV1Time...)
	m = strconv.AppendUint(m, ts, 10)
	m = append(m, '\n')
	return append(m, text...)
}

// subtreeV1Message is the ML-DSA-44 cosigned_message for a checkpoint:
// start 0, end the tree size.
//
//	struct {
//	    uint8 label[12] = "subtree/v1\n\0";
//	    opaque cosigner_name<1..2^8-1>;
//	    uint64 timestamp;
//	    opaque log_origin<1..2^8-1>;
//	    uint64 start;
//	    uint64 end;
//	    uint8 hash[32];
//	} cosigned_message;
func subtreeV1Message(name string, ts uint64, c *Checkpoint) []byte {
	m := make([]byte, 0, len(subtreeV1)+1+len(name)+8+1+len(c.Origin)+8+8+HashSize)
	m = append(m, subtreeV1...)
	m = append(m, byte(len(name)))
	m = append(m, name...)
	m = binary.BigEndian.AppendUint64(m, ts)
	m = append(m, byte(len(c.Origin)))
	m = append(m, c.Origin...)
	m = binary.BigEndian.AppendUint64(m, 0)
	m = binary.BigEndian.AppendUint64(m, c.Size)
	return append(m, c.Root[:]...)
}

// CosignCheckpoint returns key's cosignature of c at time t (truncated to
// the second). t must be after the epoch.
func CosignCheckpoint(key *WitnessPrivateKey, c *Checkpoint, t time.Time) (*Cosignature, error) {
	if t.Unix() <= 0 {
		return nil, errors.New("tlog: cosignature time must be after 1970")
	}
	return cosign(key, c, uint64(t.Unix()))
}

func cosign(key *WitnessPrivateKey, c *Checkpoint, ts uint64) (*Cosignature, error) {
	text, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	cs := &Cosignature{Name: key.pub.name, KeyID: key.pub.id, Timestamp: ts}
	switch key.pub.typ {
	case CosignatureEd25519:
		cs.Signature = ed25519.Sign(key.ed, cosignatureV1Message(text, ts))
	case CosignatureMLDSA44:
		cs.Signature = make([]byte, pqc.MLDSA44SignatureSize)
		// Hedged signing (FIPS 204 §3.4), empty context.
		err := key.pq.SignTo(subtreeV1Message(key.pub.name, ts, c), nil, cs.Signature)
		if err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// VerifyCosignature checks that cs is key's valid cosignature of c: the
// name and key ID match the key, the timestamp is at most 2^63-1, and the
// signature verifies. It makes no freshness decision.
func VerifyCosignature(key *WitnessPublicKey, c *Checkpoint, cs *Cosignature) error {
	if cs.Name != key.name || cs.KeyID != key.id {
		return fmt.Errorf("%w: cosignature is not from %s+%08x", ErrBadSignature, key.name, key.id)
	}
	raw := make([]byte, 8, 8+len(cs.Signature))
	binary.BigEndian.PutUint64(raw, cs.Timestamp)
	if _, ok := key.verify(c, append(raw, cs.Signature...)); !ok {
		return fmt.Errorf("%w: cosignature from %s+%08x", ErrBadSignature, key.name, key.id)
	}
	return nil
}

// verify checks sig, the note signature after the key ID (timestamp ||
// signature), over c, and returns its timestamp.
func (k *WitnessPublicKey) verify(c *Checkpoint, sig []byte) (uint64, bool) {
	if len(sig) != 8+k.typ.signatureSize() {
		return 0, false
	}
	ts := binary.BigEndian.Uint64(sig)
	if ts > MaxTreeSize {
		return 0, false
	}
	switch k.typ {
	case CosignatureEd25519:
		text, err := c.Marshal()
		if err != nil {
			return 0, false
		}
		return ts, ed25519.Verify(k.ed, cosignatureV1Message(text, ts), sig[8:])
	case CosignatureMLDSA44:
		return ts, k.pq.Verify(subtreeV1Message(k.name, ts, c), nil, sig[8:])
	}
	return 0, false
}

// AddCosignatures appends cosignature lines (an add-checkpoint response
// body) to a signed note, skipping lines the note already has. It checks
// that lines parse; it verifies nothing, which is the reader's job.
func AddCosignatures(signedNote, lines []byte) ([]byte, error) {
	if _, _, err := splitNote(signedNote); err != nil {
		return nil, err
	}
	if _, err := ParseCosignatures(lines); err != nil {
		return nil, err
	}
	out := bytes.Clone(signedNote)
	_, sigs, _ := splitNote(signedNote)
	have := map[string]bool{}
	for _, l := range bytes.SplitAfter(sigs, []byte("\n")) {
		have[string(l)] = true
	}
	for _, l := range bytes.SplitAfter(lines, []byte("\n")) {
		if len(l) > 0 && !have[string(l)] {
			have[string(l)] = true
			out = append(out, l...)
		}
	}
	if len(out) > MaxNoteSize {
		return nil, fmt.Errorf("%w: note too large", ErrMalformed)
	}
	return out, nil
}
