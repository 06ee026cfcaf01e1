package localstore

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func validHeaders() [][]byte {
	a := &header{kdf: kdfArgon2id, argon: DefaultArgon2, state: stateOpen}
	copy(a.salt[:], bytes.Repeat([]byte{7}, saltSize))
	copy(a.wrapped[:], bytes.Repeat([]byte{9}, wrappedSize))
	k := &header{kdf: kdfKeyFile, state: stateClean}
	return [][]byte{a.marshal(), k.marshal()}
}

// FuzzParseHeader: a header parses only if it is exactly what marshal
// produces from the parsed value, and errors are ErrCorrupt.
func FuzzParseHeader(f *testing.F) {
	for _, h := range validHeaders() {
		f.Add(h)
		f.Add(h[:headerSize-1])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got := h.marshal(); !bytes.Equal(got, b) {
			t.Fatalf("round trip:\n got %x\nwant %x", got, b)
		}
	})
}

func TestParseHeaderRejects(t *testing.T) {
	good := validHeaders()[0]
	for _, mut := range []struct {
		name string
		off  int
		val  byte
	}{
		{"magic", 0, 'M'}, {"version", 7, 2}, {"kdf-0", offKDF, 0}, {"kdf-3", offKDF, 3},
		{"time-0", offTime + 3, 0}, {"time-high", offTime, 1}, {"memory-high", offMemory, 1},
		{"threads-0", offThreads, 0}, {"threads-17", offThreads, 17},
		{"slot-size", offSlotLen + 3, slotSize + 1}, {"state", offState, 2}, {"pad", offPad, 1},
	} {
		b := bytes.Clone(good)
		b[mut.off] = mut.val
		if _, err := parseHeader(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", mut.name, err)
		}
	}
	k := validHeaders()[1]
	k[offThreads] = 1
	if _, err := parseHeader(k); !errors.Is(err, ErrCorrupt) {
		t.Errorf("key-file header with Argon2 parameters: %v, want ErrCorrupt", err)
	}
	if _, err := parseHeader(append(good, 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: %v, want ErrCorrupt", err)
	}
}

// FuzzParseRecordValue: strict parsing and round trip of record values.
func FuzzParseRecordValue(f *testing.F) {
	r := &recordValue{slot: 42, nonce: bytes.Repeat([]byte{1}, nonceSize), sealed: bytes.Repeat([]byte{2}, tagSize+5)}
	f.Add(r.marshal())
	f.Add(r.marshal()[:recordOverhead-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecordValue(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got := r.marshal(); !bytes.Equal(got, b) {
			t.Fatalf("round trip:\n got %x\nwant %x", got, b)
		}
		if len(r.sealed) < tagSize {
			t.Fatal("sealed part shorter than a tag")
		}
	})
}

// FuzzKeyTableScan: any slot region scans without panicking; a closed
// table must be whole slots, and written slots are never free.
func FuzzKeyTableScan(f *testing.F) {
	f.Add(make([]byte, 3*slotSize), false)
	f.Add(append(make([]byte, slotSize), 1), true)
	f.Fuzz(func(t *testing.T, slots []byte, recovering bool) {
		if len(slots) > 64*slotSize {
			return
		}
		path := t.TempDir() + "/keys"
		if err := writeFile(path, append(validHeaders()[1], slots...)); err != nil {
			t.Fatal(err)
		}
		kt := &keyTable{}
		var err error
		if kt.f, err = openRW(path); err != nil {
			t.Fatal(err)
		}
		defer kt.close()
		var inUse map[uint32]bool
		if recovering {
			inUse = map[uint32]bool{}
		}
		_, err = kt.scan(int64(headerSize+len(slots)), inUse, recovering)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("scan: %v", err)
			}
			if recovering || len(slots)%slotSize == 0 {
				t.Fatalf("scan refused %d bytes (recovering %v): %v", len(slots), recovering, err)
			}
			return
		}
		for _, i := range kt.free {
			var b [slotSize]byte
			kt.f.ReadAt(b[:], slotOffset(i))
			if b != zeroSlot {
				t.Fatalf("written slot %d is on the free list", i)
			}
		}
		if recovering && kt.nslots != 0 {
			t.Fatalf("recovery without records kept %d slots", kt.nslots)
		}
	})
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

func openRW(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }
