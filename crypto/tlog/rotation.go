package tlog

import (
	"fmt"
	"strings"

	"github.com/moat-im/moat/crypto/keys"
)

// Log key rotation (docs/spec/tlog.md §Log key rotation): a log moves to
// a new key by signing, with the key in force, a checkpoint that carries
// one extension line naming the next key. Witnesses record that checkpoint
// like any other, and from then on accept checkpoints of a larger tree only
// under the announced key; clients follow the change through their own
// trust anchors (for the key directory, the trust bundle published at the
// same epoch) and may check it against the announcement.

// NextLogKeyLine returns the extension line that announces next as the
// log's next key: labelNextLogKey, a space, next's text encoding.
func NextLogKeyLine(next *keys.LogPublicKey) string {
	return labelNextLogKey + " " + next.String()
}

// NextLogKey returns the log key that c announces, or nil if it announces
// none. A checkpoint with more than one announcement line, or whose
// announcement does not hold a valid log key in its text encoding, is
// ErrMalformed. Other extension lines are ignored.
func NextLogKey(c *Checkpoint) (*keys.LogPublicKey, error) {
	var next *keys.LogPublicKey
	for _, e := range c.Extensions {
		rest, ok := strings.CutPrefix(e, labelNextLogKey)
		if !ok {
			continue
		}
		text, ok := strings.CutPrefix(rest, " ")
		if !ok || next != nil {
			return nil, fmt.Errorf("%w: checkpoint: bad next-log-key line", ErrMalformed)
		}
		k, err := keys.ParseLogPublicKeyText(text)
		if err != nil {
			return nil, fmt.Errorf("%w: checkpoint: next log key: %v", ErrMalformed, err)
		}
		next = k
	}
	return next, nil
}

// openForRecord opens the note of an add-checkpoint request for a witness
// whose record is rec (nil for none) and whose key in force for the log
// is key (docs/spec/tlog.md §Log key rotation, witness rules): under key,
// for a tree no larger than rec's if rec's checkpoint announced a next
// key; else, if it did, under the announced key, for a larger tree only.
// It returns the opened note and the key it opened under, which is the
// key in force once the note is cosigned.
func openForRecord(msg []byte, origin string, key *keys.LogPublicKey, rec *witnessRecord) (*opened, *keys.LogPublicKey, error) {
	var announced *keys.LogPublicKey
	if rec != nil {
		c, err := checkpointOfNote(rec.checkpoint)
		if err != nil {
			return nil, nil, fmt.Errorf("tlog: stored witness record: %v", err)
		}
		if announced, err = NextLogKey(c); err != nil {
			return nil, nil, fmt.Errorf("tlog: stored witness record: %v", err)
		}
	}
	var err error
	if announced == nil || !announced.Equal(key) {
		var o *opened
		if o, err = openNote(msg, origin, key, nil); err == nil {
			if announced != nil && o.c.Size > rec.size {
				return nil, nil, fmt.Errorf("%w: the log announced its next key at size %d; a larger tree must be signed by it", ErrBadSignature, rec.size)
			}
			return o, key, nil
		}
		if announced == nil {
			return nil, nil, err
		}
	}
	// (A witness reconfigured with the announced key takes this path too.)
	o, aerr := openNote(msg, origin, announced, nil)
	if aerr != nil {
		if err == nil {
			err = aerr
		}
		return nil, nil, err
	}
	if o.c.Size <= rec.size {
		return nil, nil, fmt.Errorf("%w: the announced key signs only trees larger than %d", ErrBadSignature, rec.size)
	}
	return o, announced, nil
}

// checkAnnouncement applies the witness rules on the announcement a
// checkpoint carries: it must parse, must not name the key in force, and
// a checkpoint of the size the witness last cosigned must announce what
// the stored one announced (same size and root but another announcement
// is another statement about the same tree).
func checkAnnouncement(c *Checkpoint, key *keys.LogPublicKey, rec *witnessRecord) error {
	next, err := NextLogKey(c)
	if err != nil {
		return err
	}
	if next != nil && next.Equal(key) {
		return fmt.Errorf("%w: checkpoint announces the key in force as the next key", ErrMalformed)
	}
	if rec == nil || c.Size != rec.size {
		return nil
	}
	sc, err := checkpointOfNote(rec.checkpoint)
	if err != nil {
		return fmt.Errorf("tlog: stored witness record: %v", err)
	}
	prev, err := NextLogKey(sc)
	if err != nil {
		return fmt.Errorf("tlog: stored witness record: %v", err)
	}
	if (prev == nil) != (next == nil) || (prev != nil && !prev.Equal(next)) {
		return fmt.Errorf("%w: size %d already cosigned with another next-key announcement", ErrInconsistent, c.Size)
	}
	return nil
}
