package badgerprekey

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/moat-im/moat/server/store/prekey"
)

// Key schema (docs/spec/api.md §Prekey storage). Every key starts with
// one prefix byte; integers are big-endian. Every value starts with the
// version byte 1 and ends with crc32c(key || value without the CRC).
//
//	"v"                                  schema version (ASCII "1")
//	"s" || dev[32] || kind               singleton: uint32 id, record
//	"p" || dev[32] || kind || uint32 id  pool item: record
//	"x" || dev[32] || kind               exhausted count: uint64
const (
	prefixSingle    = 's'
	prefixPool      = 'p'
	prefixExhausted = 'x'
	valueVersion    = 1
	schemaVersion   = "1"
)

var keyVersion = []byte("v")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func devKey(prefix byte, dev prekey.ID, kind prekey.Kind) []byte {
	k := make([]byte, 0, 1+32+1+4)
	k = append(k, prefix)
	k = append(k, dev[:]...)
	return append(k, byte(kind))
}

func poolKey(dev prekey.ID, kind prekey.Kind, id uint32) []byte {
	return binary.BigEndian.AppendUint32(devKey(prefixPool, dev, kind), id)
}

// seal returns version || body || crc32c(key || version || body).
func seal(key, body []byte) []byte {
	v := make([]byte, 0, 1+len(body)+4)
	v = append(v, valueVersion)
	v = append(v, body...)
	c := crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, v)
	return binary.BigEndian.AppendUint32(v, c)
}

// open checks a sealed value read under key and returns its body.
func open(key, v []byte) ([]byte, bool) {
	if len(v) < 5 || v[0] != valueVersion {
		return nil, false
	}
	body, sum := v[:len(v)-4], binary.BigEndian.Uint32(v[len(v)-4:])
	if crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, body) != sum {
		return nil, false
	}
	return body[1:], true
}
