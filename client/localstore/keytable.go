package localstore

// The key table (docs/spec/client-store.md §Key table): a file of a
// header and fixed-size slots, each slot a record key sealed under the
// slot key. Slots are written and erased in place, and the file is synced
// after each batch, so an erased key is not left behind in an older copy
// of the file the store itself made.

import (
	"container/heap"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/moat-im/moat/internal/faultfs"
)

// recordKey is a record's own key. Its Format redacts it.
type recordKey [keySize]byte

// Format prints nothing of the key.
func (recordKey) Format(f fmt.State, _ rune) { io.WriteString(f, "localstore.recordKey{REDACTED}") }

// tableKey is the random key of a key table, wrapped in its header.
type tableKey [keySize]byte

// Format prints nothing of the key.
func (tableKey) Format(f fmt.State, _ rune) { io.WriteString(f, "localstore.tableKey{REDACTED}") }

// wrappingKey is derived from the passphrase or key file; it wraps the
// table key.
type wrappingKey [keySize]byte

// Format prints nothing of the key.
func (wrappingKey) Format(f fmt.State, _ rune) { io.WriteString(f, "localstore.wrappingKey{REDACTED}") }

// indexKey keys the HMAC of scope and kind tags.
type indexKey []byte

// Format prints nothing of the key.
func (indexKey) Format(f fmt.State, _ rune) { io.WriteString(f, "localstore.indexKey{REDACTED}") }

var zeroSlot [slotSize]byte

// keyTable is an open key-table file. Its methods are called with the
// store's write lock held, except readKey, which is safe for concurrent
// use with writes to other slots.
type keyTable struct {
	f      *os.File
	faults *faultfs.Injector
	hdr    *header
	slot   cipher.AEAD // seals slots under the slot key
	nslots uint32      // slots in the file, or reserved beyond its end
	free   slotHeap    // free slots below nslots
	leaked bool        // some slot is held by no record: recover at next Open
}

// readKey opens slot i.
func (kt *keyTable) readKey(i uint32) (recordKey, error) {
	var k recordKey
	var b [slotSize]byte
	if _, err := kt.f.ReadAt(b[:], slotOffset(i)); err != nil {
		if errors.Is(err, io.EOF) {
			return k, fmt.Errorf("%w: record key %d beyond the key table", ErrCorrupt, i)
		}
		return k, fmt.Errorf("localstore: reading the key table: %w", err)
	}
	if b == zeroSlot {
		return k, fmt.Errorf("%w: record key %d erased", ErrCorrupt, i)
	}
	pt, err := kt.slot.Open(k[:0], b[:nonceSize], b[nonceSize:], slotAD(i))
	if err != nil || len(pt) != keySize {
		return recordKey{}, fmt.Errorf("%w: record key %d fails authentication", ErrCorrupt, i)
	}
	return k, nil
}

// reserve takes a free slot, lowest first.
func (kt *keyTable) reserve() (uint32, error) {
	if kt.free.Len() > 0 {
		return heap.Pop(&kt.free).(uint32), nil
	}
	if kt.nslots == 1<<32-1 {
		return 0, errors.New("localstore: key table full")
	}
	kt.nslots++
	return kt.nslots - 1, nil
}

// release returns reserved slots never written to the free list.
func (kt *keyTable) release(slots []uint32) {
	for _, i := range slots {
		heap.Push(&kt.free, i)
	}
}

// writeAt writes b at off, through the fault injector.
func (kt *keyTable) writeAt(b []byte, off int64) error {
	n, ferr := kt.faults.Write(len(b))
	if _, err := kt.f.WriteAt(b[:n], off); err != nil {
		return err
	}
	return ferr
}

func (kt *keyTable) sync() error {
	if err := kt.faults.Sync(); err != nil {
		return err
	}
	return kt.f.Sync()
}

// writeKeys seals and writes keys into their slots, then syncs
// (docs/spec/client-store.md §Update, step 1).
func (kt *keyTable) writeKeys(keys map[uint32]*recordKey) error {
	if len(keys) == 0 {
		return nil
	}
	var b [slotSize]byte
	for i, k := range keys {
		if _, err := rand.Read(b[:nonceSize]); err != nil {
			return err
		}
		kt.slot.Seal(b[:nonceSize], b[:nonceSize], k[:], slotAD(i))
		if err := kt.writeAt(b[:], slotOffset(i)); err != nil {
			return fmt.Errorf("localstore: writing the key table: %w", err)
		}
	}
	if err := kt.sync(); err != nil {
		return fmt.Errorf("localstore: syncing the key table: %w", err)
	}
	return nil
}

// erase overwrites slots with zeros in place and syncs
// (docs/spec/client-store.md §Update, step 3); on success the slots are
// free.
func (kt *keyTable) erase(slots []uint32) error {
	if len(slots) == 0 {
		return nil
	}
	sorted := slices.Clone(slots)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	// One write per run of adjacent slots, at most 256 slots long.
	zeros := make([]byte, min(len(sorted), 256)*slotSize)
	for start := 0; start < len(sorted); {
		end := start + 1
		for end < len(sorted) && end-start < 256 && sorted[end] == sorted[end-1]+1 {
			end++
		}
		if err := kt.writeAt(zeros[:(end-start)*slotSize], slotOffset(sorted[start])); err != nil {
			return fmt.Errorf("localstore: erasing keys: %w", err)
		}
		start = end
	}
	if err := kt.sync(); err != nil {
		return fmt.Errorf("localstore: erasing keys: %w", err)
	}
	kt.release(sorted)
	return nil
}

// setState writes the header's state byte in place and syncs.
func (kt *keyTable) setState(state byte) error {
	if err := kt.writeAt([]byte{state}, offState); err != nil {
		return fmt.Errorf("localstore: writing the key table header: %w", err)
	}
	if err := kt.sync(); err != nil {
		return fmt.Errorf("localstore: syncing the key table: %w", err)
	}
	kt.hdr.state = state
	return nil
}

// destroy overwrites the wrapped table key and every slot with zeros, in
// place, and syncs: no key of the table can be recovered from the file
// afterwards (docs/spec/client-store.md §Wipe).
func (kt *keyTable) destroy() error {
	end := slotOffset(kt.nslots)
	if st, err := kt.f.Stat(); err == nil {
		end = max(end, st.Size())
	}
	var errs []error
	zeros := make([]byte, 64<<10)
	for off := int64(offWrapped); off < end; off += int64(len(zeros)) {
		if err := kt.writeAt(zeros[:min(int64(len(zeros)), end-off)], off); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if err := kt.sync(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("localstore: destroying the key table: %w", err)
	}
	return nil
}

// scan reads every slot and builds the free list. inUse, if not nil,
// names the slots held by records: any other written slot is erased
// (docs/spec/client-store.md §Recovery). It returns how many it erased.
func (kt *keyTable) scan(size int64, inUse map[uint32]bool, recovering bool) (int, error) {
	n := size - headerSize
	if n%slotSize != 0 {
		if !recovering {
			return 0, fmt.Errorf("%w: key table of %d bytes", ErrCorrupt, size)
		}
		// A crash while the table grew: the partial slot was never
		// referenced (keys are synced before records). Zero it before
		// truncating, so that no part of a key is left in freed blocks.
		partial := n % slotSize
		n -= partial
		if err := kt.writeAt(make([]byte, partial), headerSize+n); err != nil {
			return 0, fmt.Errorf("localstore: erasing keys: %w", err)
		}
	}
	if n/slotSize > 1<<32-1 {
		return 0, fmt.Errorf("%w: key table of %d bytes", ErrCorrupt, size)
	}
	kt.nslots = uint32(n / slotSize)
	kt.free = kt.free[:0]
	var erase []uint32
	buf := make([]byte, 4096*slotSize)
	last := int64(-1) // highest slot in use
	for start := uint32(0); start < kt.nslots; {
		cnt := min(uint32(4096), kt.nslots-start)
		b := buf[:cnt*slotSize]
		if _, err := kt.f.ReadAt(b, slotOffset(start)); err != nil {
			return 0, fmt.Errorf("localstore: reading the key table: %w", err)
		}
		for j := range cnt {
			i := start + j
			written := [slotSize]byte(b[j*slotSize:]) != zeroSlot
			switch {
			case inUse == nil && written, inUse[i]:
				last = int64(i)
			case written:
				erase = append(erase, i)
			default:
				kt.free = append(kt.free, i)
			}
		}
		start += cnt
	}
	if len(erase) > 0 {
		for _, i := range erase {
			if err := kt.writeAt(zeroSlot[:], slotOffset(i)); err != nil {
				return 0, fmt.Errorf("localstore: erasing keys: %w", err)
			}
			kt.free = append(kt.free, i)
		}
	}
	if inUse == nil {
		heap.Init(&kt.free)
		return 0, nil
	}
	// The zeros reach the disk before the file shrinks: truncating first
	// could free blocks still holding the keys.
	if err := kt.sync(); err != nil {
		return 0, fmt.Errorf("localstore: syncing the key table: %w", err)
	}
	if end := slotOffset(uint32(last + 1)); end < size {
		// Trailing free slots and any partial slot: shrink the file.
		kt.nslots = uint32(last + 1)
		if err := kt.f.Truncate(end); err != nil {
			return 0, fmt.Errorf("localstore: truncating the key table: %w", err)
		}
		if err := kt.sync(); err != nil {
			return 0, fmt.Errorf("localstore: syncing the key table: %w", err)
		}
		kept := kt.free[:0]
		for _, i := range kt.free {
			if i < kt.nslots {
				kept = append(kept, i)
			}
		}
		kt.free = kept
	}
	heap.Init(&kt.free)
	return len(erase), nil
}

// shrink truncates free slots at the end of the file and syncs.
func (kt *keyTable) shrink() error {
	free := slices.Sorted(slices.Values(kt.free))
	n := kt.nslots
	for j := len(free) - 1; j >= 0 && n > 0 && free[j] == n-1; j-- {
		n--
	}
	if n == kt.nslots {
		return nil
	}
	if err := kt.f.Truncate(slotOffset(n)); err != nil {
		return fmt.Errorf("localstore: truncating the key table: %w", err)
	}
	if err := kt.sync(); err != nil {
		return fmt.Errorf("localstore: syncing the key table: %w", err)
	}
	kt.nslots = n
	kept := kt.free[:0]
	for _, i := range kt.free {
		if i < n {
			kept = append(kept, i)
		}
	}
	kt.free = kept
	heap.Init(&kt.free)
	return nil
}

func (kt *keyTable) close() error { return kt.f.Close() }

// slotHeap is a min-heap of free slot numbers, so that the table stays
// dense at its start.
type slotHeap []uint32

func (h slotHeap) Len() int           { return len(h) }
func (h slotHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h slotHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *slotHeap) Push(x any)        { *h = append(*h, x.(uint32)) }
func (h *slotHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newAEAD(key []byte) cipher.AEAD {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		panic("localstore: " + err.Error()) // key is always 32 bytes
	}
	return a
}
