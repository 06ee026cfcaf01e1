package tlog

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/mod/sumdb/note"
)

// Log signatures on checkpoints (docs/spec/tlog.md §Log signatures): two
// signed-note lines under the key name Origin, over the checkpoint note
// text. The Ed25519 line is a standard type 0x01 note signature; the
// ML-DSA-65 line uses the private-use type 0xff || labelLogMLDSA65 || "\n".

// keyID computes a signed-note key ID:
// SHA-256(name || 0x0A || signature type || public key)[:4].
func keyID(name, sigType string, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n'})
	h.Write([]byte(sigType))
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func logEd25519ID(origin string, k *keys.LogPublicKey) uint32 {
	return keyID(origin, string([]byte{sigTypeEd25519}), k.Ed25519())
}

func logMLDSA65ID(origin string, k *keys.LogPublicKey) uint32 {
	return keyID(origin, logMLDSA65Type, k.MLDSA65().Bytes())
}

// Ed25519VerifierKey returns the standard signed-note verifier key (vkey)
// of the Ed25519 half of a log key for origin, as
// golang.org/x/mod/sumdb/note.NewVerifier and off-the-shelf witnesses
// accept it. Such a verifier checks only the classical line.
func Ed25519VerifierKey(origin string, k *keys.LogPublicKey) (string, error) {
	if err := checkOrigin(origin); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return note.NewEd25519VerifierKey(origin, k.Ed25519())
}

type noteSigner struct {
	name string
	id   uint32
	sign func(msg []byte) ([]byte, error)
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.id }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return s.sign(msg) }

// SignCheckpoint returns c as a signed note with the two log signature
// lines, Ed25519 first. The key name of both is c.Origin.
func SignCheckpoint(c *Checkpoint, key *keys.LogPrivateKey) ([]byte, error) {
	text, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	if c.Size == 0 && c.Root != EmptyRoot {
		return nil, fmt.Errorf("%w: empty tree with a non-empty root", ErrMalformed)
	}
	pub := key.Public()
	ed := &noteSigner{c.Origin, logEd25519ID(c.Origin, pub), func(m []byte) ([]byte, error) {
		return key.Ed25519Signer().Sign(nil, m, crypto.Hash(0))
	}}
	pq := &noteSigner{c.Origin, logMLDSA65ID(c.Origin, pub), func(m []byte) ([]byte, error) {
		return key.MLDSA65Signer().Sign(rand.Reader, m, crypto.Hash(0))
	}}
	return note.Sign(&note.Note{Text: string(text)}, ed, pq)
}

type noteVerifier struct {
	name   string
	id     uint32
	verify func(msg, sig []byte) bool
}

func (v *noteVerifier) Name() string                { return v.name }
func (v *noteVerifier) KeyHash() uint32             { return v.id }
func (v *noteVerifier) Verify(msg, sig []byte) bool { return v.verify(msg, sig) }

type nameID struct {
	name string
	id   uint32
}

// verifierSet implements note.Verifiers over a fixed set of keys.
type verifierSet map[nameID]note.Verifier

func (s verifierSet) Verifier(name string, id uint32) (note.Verifier, error) {
	if v, ok := s[nameID{name, id}]; ok {
		return v, nil
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: id}
}

func (s verifierSet) add(v note.Verifier) error {
	k := nameID{v.Name(), v.KeyHash()}
	if _, ok := s[k]; ok {
		return fmt.Errorf("%w: two keys named %s+%08x", ErrMalformed, k.name, k.id)
	}
	s[k] = v
	return nil
}

// opened is a verified Moat checkpoint note.
type opened struct {
	c       *Checkpoint
	text    []byte   // note text
	logSigs []byte   // the two log signature lines, verbatim
	cosigs  []uint64 // per witness key given to openNote: its timestamp, or 0 if absent
}

// openNote verifies msg as a Moat checkpoint note of origin under the
// hybrid policy: both log signature lines are required and valid. Any line
// from one of the witness keys ws must verify as a cosignature (signed-note:
// a known key whose signature fails rejects the note); their timestamps are
// returned in order. Lines from other keys are ignored.
func openNote(msg []byte, origin string, log *keys.LogPublicKey, ws []*WitnessPublicKey) (*opened, error) {
	text, _, err := splitNote(msg)
	if err != nil {
		return nil, err
	}
	c, err := ParseCheckpoint(text)
	if err != nil {
		return nil, err
	}
	if c.Origin != origin {
		return nil, fmt.Errorf("%w: checkpoint of %q, want %q", ErrUnknownOrigin, c.Origin, origin)
	}
	edID, pqID := logEd25519ID(origin, log), logMLDSA65ID(origin, log)
	edPub, pqPub := log.Ed25519(), log.MLDSA65()
	set := verifierSet{}
	if err := set.add(&noteVerifier{origin, edID, func(m, sig []byte) bool {
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(edPub, m, sig)
	}}); err != nil {
		return nil, err
	}
	if err := set.add(&noteVerifier{origin, pqID, func(m, sig []byte) bool {
		return pqPub.Verify(m, nil, sig)
	}}); err != nil {
		return nil, err
	}
	o := &opened{c: c, text: text, cosigs: make([]uint64, len(ws))}
	for i, w := range ws {
		i, w := i, w
		if err := set.add(&noteVerifier{w.name, w.id, func(_, sig []byte) bool {
			ts, ok := w.verify(c, sig)
			if ok {
				o.cosigs[i] = ts
			}
			return ok
		}}); err != nil {
			return nil, err
		}
	}
	n, err := note.Open(msg, set)
	if err != nil {
		var invalid *note.InvalidSignatureError
		var unverified *note.UnverifiedNoteError
		switch {
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: invalid signature from %s+%08x", ErrBadSignature, invalid.Name, invalid.Hash)
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: no log signature", ErrBadSignature)
		default:
			return nil, fmt.Errorf("%w: note: %v", ErrMalformed, err)
		}
	}
	if n.Text != string(text) {
		return nil, fmt.Errorf("%w: note text", ErrMalformed) // unreachable: same split rule
	}
	var haveEd, havePQ bool
	for _, s := range n.Sigs {
		if s.Name != origin {
			continue
		}
		switch s.Hash {
		case edID:
			haveEd = true
		case pqID:
			havePQ = true
		default:
			continue
		}
		o.logSigs = append(o.logSigs, "— "+s.Name+" "+s.Base64+"\n"...)
	}
	if !haveEd || !havePQ {
		return nil, fmt.Errorf("%w: hybrid policy needs both the Ed25519 and the ML-DSA-65 line", ErrBadSignature)
	}
	return o, nil
}

// OpenCheckpoint verifies a signed checkpoint note of the log origin under
// Moat's hybrid policy, both log signature lines present and valid, and
// returns the checkpoint. Other signature lines, such as cosignatures, are
// ignored. It does not check witnesses, freshness or consistency: clients
// use a Verifier. A checkpoint of the empty tree must have EmptyRoot.
func OpenCheckpoint(msg []byte, origin string, key *keys.LogPublicKey) (*Checkpoint, error) {
	o, err := openNote(msg, origin, key, nil)
	if err != nil {
		return nil, err
	}
	if err := checkEmptyRoot(o.c); err != nil {
		return nil, err
	}
	return o.c, nil
}

// checkEmptyRoot checks that a checkpoint of size 0 has the empty root.
func checkEmptyRoot(c *Checkpoint) error {
	if c.Size == 0 && c.Root != EmptyRoot {
		return fmt.Errorf("%w: empty tree with a non-empty root", ErrMalformed)
	}
	return nil
}
