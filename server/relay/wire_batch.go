package relay

import (
	"encoding/binary"
	"fmt"

	"github.com/moat-im/moat/crypto/sealed"
	"golang.org/x/crypto/cryptobyte"
)

// Wire formats of docs/spec/api.md §Batch send (type bytes 0x63, 0x64).

const (
	typeSendBatch        = 0x63
	typeSendBatchResults = 0x64
)

// Bounds of the batch wire formats.
const (
	// MaxBatchItems bounds the items of a SendBatch.
	MaxBatchItems = 64
	// MaxBatchSize bounds a SendBatch encoding, and so the body of
	// POST /relay/v1/send-batch.
	MaxBatchSize = 4 << 20
	// maxItemAuth bounds an item's authorization: a SendAuthorization is
	// at most 357 bytes (§Send step 3).
	maxItemAuth = 357
	// MaxBatchResultsSize bounds a SendBatchResults encoding.
	MaxBatchResultsSize = 2 + 3 + MaxBatchItems*(2+4+2+maxReceiptSize)
	// maxReceiptSize bounds a SendReceipt encoding.
	maxReceiptSize = 2 + 8 + 1 + 2 + 1<<16 - 1
)

// BatchItem is an item of a SendBatch: a SendAuthorization encoding and
// a sealed envelope, as a single send carries them in its header and body.
//
//	struct {
//	    opaque authorization<0..2^16-1>;    /* SendAuthorization */
//	    opaque envelope<0..2^24-1>;         /* SealedEnvelope */
//	} SendBatchItem;
//
//	struct {
//	    uint8  type = 0x63;
//	    uint8  version = 1;
//	    SendBatchItem items<1..2^24-1>;     /* 1 to 64 items */
//	} SendBatch;
//
// The framing does not judge the contents: an empty authorization or an
// envelope that is not a size bucket is that item's error, as in a single
// send (§Batch send).
type BatchItem struct {
	Auth     []byte
	Envelope []byte
}

// MarshalSendBatch returns the SendBatch encoding of items.
func MarshalSendBatch(items []BatchItem) ([]byte, error) {
	if len(items) == 0 || len(items) > MaxBatchItems {
		return nil, ErrMalformed
	}
	var b cryptobyte.Builder
	b.AddUint8(typeSendBatch)
	b.AddUint8(wireVersion)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, it := range items {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(it.Auth) })
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(it.Envelope) })
		}
	})
	out, err := b.Bytes()
	if err != nil || len(out) > MaxBatchSize {
		return nil, ErrMalformed
	}
	return out, nil
}

// ParseSendBatch parses a SendBatch strictly: at most MaxBatchSize bytes,
// 1 to MaxBatchItems items, no trailing bytes. The items alias data.
func ParseSendBatch(data []byte) ([]BatchItem, error) {
	if len(data) > MaxBatchSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	var typ, ver uint8
	var items cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeSendBatch || !s.ReadUint8(&ver) || ver != wireVersion ||
		!s.ReadUint24LengthPrefixed(&items) || !s.Empty() || items.Empty() {
		return nil, ErrMalformed
	}
	var out []BatchItem
	for !items.Empty() {
		var auth, env cryptobyte.String
		if len(out) == MaxBatchItems || !items.ReadUint16LengthPrefixed(&auth) || !items.ReadUint24LengthPrefixed(&env) {
			return nil, ErrMalformed
		}
		out = append(out, BatchItem{Auth: auth, Envelope: env})
	}
	return out, nil
}

// BatchResult is the answer to one item of a batch: the status a single
// send of the item would have had, its Retry-After for 429 and 503, and
// for 200 its SendReceipt.
//
//	struct {
//	    uint16 status;                      /* an HTTP status code of §Send */
//	    uint32 retry_after;                 /* seconds; >= 1 for 429 and 503, else 0 */
//	    opaque receipt<0..2^16-1>;          /* SendReceipt iff status = 200 */
//	} SendBatchResult;
//
//	struct {
//	    uint8  type = 0x64;
//	    uint8  version = 1;
//	    SendBatchResult results<8..2^24-1>; /* 1 to 64, one per item, in order */
//	} SendBatchResults;
type BatchResult struct {
	Status     int
	RetryAfter uint32
	Receipt    *Receipt
}

// batchStatuses are the statuses an item may have (§Send).
var batchStatuses = map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 409: true,
	413: true, 429: true, 500: true, 503: true, 507: true}

func (r *BatchResult) valid() bool {
	wait := r.Status == 429 || r.Status == 503
	return batchStatuses[r.Status] && (r.Status == 200) == (r.Receipt != nil) && wait == (r.RetryAfter > 0)
}

// MarshalBatchResults returns the SendBatchResults encoding.
func MarshalBatchResults(rs []BatchResult) ([]byte, error) {
	if len(rs) == 0 || len(rs) > MaxBatchItems {
		return nil, ErrMalformed
	}
	// The sizes first, so that the answer is built in one buffer of its
	// exact size, the receipts in place.
	size := 5
	for i := range rs {
		r := &rs[i]
		if !r.valid() {
			return nil, ErrMalformed
		}
		size += 8
		if r.Receipt != nil {
			size += r.Receipt.EncodedLen()
		}
	}
	if size-5 > 0xffffff {
		return nil, ErrMalformed
	}
	b := make([]byte, 0, size)
	b = append(b, typeSendBatchResults, wireVersion)
	b = append(b, byte((size-5)>>16), byte((size-5)>>8), byte(size-5))
	for i := range rs {
		b = binary.BigEndian.AppendUint16(b, uint16(rs[i].Status))
		b = binary.BigEndian.AppendUint32(b, rs[i].RetryAfter)
		at := len(b)
		b = append(b, 0, 0)
		if rs[i].Receipt != nil {
			var err error
			if b, err = rs[i].Receipt.AppendBinary(b); err != nil {
				return nil, err
			}
		}
		n := len(b) - at - 2
		if n > 0xffff {
			return nil, ErrMalformed
		}
		binary.BigEndian.PutUint16(b[at:], uint16(n))
	}
	if len(b) != size {
		return nil, fmt.Errorf("relay: batch results of %d bytes, expected %d", len(b), size)
	}
	return b, nil
}

// ParseBatchResults parses a SendBatchResults strictly: 1 to
// MaxBatchItems results, each with a status of §Send, a receipt that
// parses (ParseReceipt) exactly when the status is 200, a Retry-After of
// at least 1 exactly for 429 and 503, and no trailing bytes. It does not
// verify the receipts' heads (Client.SendBatch does).
func ParseBatchResults(data []byte) ([]BatchResult, error) {
	if len(data) > MaxBatchResultsSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	var typ, ver uint8
	var list cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeSendBatchResults || !s.ReadUint8(&ver) || ver != wireVersion ||
		!s.ReadUint24LengthPrefixed(&list) || !s.Empty() || list.Empty() {
		return nil, ErrMalformed
	}
	var out []BatchResult
	for !list.Empty() {
		var st uint16
		var r BatchResult
		var rc cryptobyte.String
		if len(out) == MaxBatchItems || !list.ReadUint16(&st) || !list.ReadUint32(&r.RetryAfter) ||
			!list.ReadUint16LengthPrefixed(&rc) {
			return nil, ErrMalformed
		}
		r.Status = int(st)
		if len(rc) > 0 {
			var err error
			if r.Receipt, err = ParseReceipt(rc); err != nil {
				return nil, ErrMalformed
			}
		}
		if !r.valid() {
			return nil, ErrMalformed
		}
		out = append(out, r)
	}
	return out, nil
}

// batchEnvelopeStatus checks an envelope size as a send does (§Send
// step 2): 0 if accepted, else the status.
func batchEnvelopeStatus(n int, maxEnvelope int) int {
	switch {
	case n > maxEnvelope:
		return 413
	case !sealed.IsBucket(n):
		return 400
	}
	return 0
}
