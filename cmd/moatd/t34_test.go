package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
)

// TestT34RelayStorageDump (adversarial case T34) runs moatd serve as a
// subprocess through an end-to-end exchange with real PQXDH, ratchet and
// sealed sender: device A (the dev tenant's demo user) and device B (a
// user whose display name is a marker) publish prekeys and tokens, A
// sends B a first message under B's MAC token and another under an
// anonymous token, B decrypts both and answers; A sends a file
// (client/attach, chunked upload, anonymous download) and leaves a second
// upload half done. Message and file content carry markers, and so does
// B's display name in the directory. The server is stopped, and every key
// and value of the relay's three badger stores is read and decoded as the
// store reads it (schema, version, checksum, the envelope's header), so is
// every file of its blob store (meta records, chunks against the
// ciphertext sent), every byte of every file under DATA/relay is
// searched, and so is every log line and the metrics: no marker, no
// display name, no sender identity in a mailbox. Every record's key prefix
// must be one that SECURITY.md §Relay metadata lists for its store, and
// every blob file one of its blob kinds.
func TestT34RelayStorageDump(t *testing.T) {
	ctx := context.Background()
	bin := buildMoatd(t)
	data := t.TempDir()
	srv := startServe(t, bin, data)
	mark := hex.EncodeToString(randBytes(8))
	contentMarker := "t34-content-" + mark
	profileMarker := "t34-profile-title-" + mark
	nameMarker := "T34Name" + mark

	// An admin adds user B with the marker as display name, and issues a
	// code; B enrols, then A (the demo code).
	out := adminRun(t, bin, srv, "add-user", "--name", nameMarker)
	userB := regexp.MustCompile(`(?m)^user (\S+)$`).FindStringSubmatch(out)[1]
	out = adminRun(t, bin, srv, "issue-code", "--user", userB)
	codeB := regexp.MustCompile(`(?m)^code (\S+)$`).FindStringSubmatch(out)[1]
	b := enrolCode(t, srv, codeB)
	a := enrolDemo(t, bin, srv)

	ca, cb := relayClient(t, a, data, srv.url), relayClient(t, b, data, srv.url)
	ka, kb := newPrekeys(t, a), newPrekeys(t, b)
	check(t, ca.UploadPrekeys(ctx, must(ka.upload.Marshal())))
	check(t, cb.UploadPrekeys(ctx, must(kb.upload.Marshal())))
	authB := macToken(t, cb, b, 1) // given to A inside an earlier E2EE message
	authA := macToken(t, ca, a, 2)
	issuer, err := ca.IssuerKey(ctx)
	check(t, err)
	toks, err := ca.IssueTokens(ctx, issuer, 3)
	check(t, err)

	// A → B: bundle, PQXDH, ratchet, seal, send; twice.
	resp, err := ca.FetchBundle(ctx, b.mailbox())
	check(t, err)
	bun, recB, err := bundle.Open(resp, b.id.Public(), b.mailbox(), time.Now())
	check(t, err)
	im, res, err := pqxdh.Initiate(rand.Reader, a.id, bun)
	check(t, err)
	as, err := ratchet.NewInitiator(ratchet.Config{}, ratchet.Params{SharedKey: res.SharedKey, AD: res.AD, Self: a.id.Public(), Peer: b.id.Public()},
		bun.SignedPrekey.Key, bun.KEMPrekey.Key, must(im.Marshal()))
	check(t, err)
	senderA := sealed.Sender{Tenant: a.tenant, User: a.cert.User, Device: a.cert.Device, Serial: a.cert.Serial, Identity: a.id.Public()}
	plain := []string{
		contentMarker + " hello " + nameMarker,
		"profile " + profileMarker + " display name " + nameMarker,
	}
	var envs [][]byte
	for i, p := range plain {
		ct, err := as.Encrypt([]byte(p))
		check(t, err)
		env, err := recB.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600, Sender: senderA,
			Timestamp: time.Now(), ContentType: sealed.ContentRatchetMessage, Content: ct})
		check(t, err)
		auth := authB
		if i == 1 {
			auth = must(relay.AnonymousAuthorization(toks[0]))
		}
		_, err = (&relay.Client{BaseURL: srv.url, RelayKey: ca.RelayKey}).Send(ctx, auth, env)
		check(t, err)
		envs = append(envs, env)
	}

	// B: fetch, open, bind, decrypt; ack the first only, so that the
	// second stays stored for the dump.
	pg, err := cb.Fetch(ctx, 0, 10)
	check(t, err)
	if len(pg.Messages) != 2 {
		t.Fatalf("B got %d messages", len(pg.Messages))
	}
	kr := sealed.NewKeyring(b.mailbox())
	kr.Add(kb.upload.SealedSenderKey.ID, kb.ssk)
	var bs *ratchet.Session
	for i, m := range pg.Messages {
		o, err := kr.Open(m.Envelope)
		check(t, err)
		if bs == nil {
			pre, err := ratchet.PeekPreamble(o.Content)
			check(t, err)
			im, err := pqxdh.ParseInitialMessage(pre)
			check(t, err)
			check(t, o.CheckPeer(im.Identity))
			r, err := pqxdh.Respond(b.id, im, kb.responderKeys(im))
			check(t, err)
			bs, err = ratchet.NewResponder(ratchet.Config{}, ratchet.Params{SharedKey: r.SharedKey, AD: r.AD, Self: b.id.Public(), Peer: im.Identity}, kb.spk, kb.kems[im.KEMPrekeyID])
			check(t, err)
		}
		got, err := bs.Decrypt(o.Content)
		check(t, err)
		if string(got.Plaintext) != plain[i] {
			t.Fatalf("B decrypted %q", got.Plaintext)
		}
	}
	check(t, cb.Ack(ctx, pg.Messages[0].Seq))

	// B → A: an answer, left unacknowledged in A's mailbox.
	ct, err := bs.Encrypt([]byte("re: " + contentMarker))
	check(t, err)
	bundleA, err := cb.FetchBundle(ctx, a.mailbox())
	check(t, err)
	_, recA, err := bundle.Open(bundleA, a.id.Public(), a.mailbox(), time.Now())
	check(t, err)
	envA, err := recA.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600,
		Sender:    sealed.Sender{Tenant: b.tenant, User: b.cert.User, Device: b.cert.Device, Serial: b.cert.Serial, Identity: b.id.Public()},
		Timestamp: time.Now(), ContentType: sealed.ContentRatchetMessage, Content: ct})
	check(t, err)
	_, err = (&relay.Client{BaseURL: srv.url, RelayKey: ca.RelayKey}).Send(ctx, authA, envA)
	check(t, err)

	// A sends B a file: encrypted by client/attach, uploaded in chunks,
	// downloaded anonymously by B and decrypted. A second upload is left
	// half done, as an interrupted one would be.
	attPlain := bytes.Repeat([]byte(contentMarker+" attachment "+nameMarker+" "), 20_000)
	ref, err := attach.Upload(ctx, ca, bytes.NewReader(attPlain), int64(len(attPlain)), &attach.Options{ChunkSize: 256 << 10})
	check(t, err)
	anon := &relay.Client{BaseURL: srv.url, RelayKey: ca.RelayKey}
	var attGot bytes.Buffer
	check(t, attach.Download(ctx, anon, ref, &attGot, nil))
	if !bytes.Equal(attGot.Bytes(), attPlain) {
		t.Fatal("attachment round trip")
	}
	rc, _, err := anon.DownloadAttachment(ctx, ref.ID, 0)
	check(t, err)
	blobs := map[string]*uploadedBlob{ref.ID.String(): {data: must(io.ReadAll(rc)), final: true}}
	rc.Close()
	partial := randBytes(100_000)
	pu, err := ca.CreateAttachment(ctx, 3*int64(len(partial)), time.Now().Add(time.Hour))
	check(t, err)
	pid := pu.ID
	_, err = ca.AppendAttachment(ctx, pu, 0, partial)
	check(t, err)
	// Its meta record holds the hash of the upload token, bound to A's
	// device (docs/spec/attachments.md §Upload capability), never the
	// token.
	mbA := a.mailbox()
	ptag := sha256.Sum256(slices.Concat([]byte("moat/v1/attachment-upload\x00"), mbA[:], pu.Token[:]))
	blobs[pid.String()] = &uploadedBlob{data: partial, size: 3 * int64(len(partial)), tag: &ptag}
	blobs[ref.ID.String()].size = int64(len(blobs[ref.ID.String()].data))

	metrics := httpBody(t, srv.url+"/metrics")
	srv.stop(t)

	secrets := map[string][]byte{
		"content marker":    []byte(contentMarker),
		"profile marker":    []byte(profileMarker),
		"display name":      []byte(nameMarker),
		"demo display name": []byte("Demo User"),
		"MAC token B":       authB[3:],
		"MAC token A":       authA[3:],
		"anonymous token":   toks[0].Authenticator[:],
		"A's identity key":  a.id.Public().Signing.Raw(),
		"A's sender device": a.cert.Device[:],
		"A's sender user":   a.cert.User[:],
		"B's user":          b.cert.User[:],
		"A's device cert":   must(a.cert.Marshal())[:64],
		"file key":          ref.Key[:],
		"file digest":       ref.Digest[:],
		"upload token":      pu.Token[:],
	}
	forms := func(s []byte) [][]byte {
		return [][]byte{s, bytes.ToLower(s), []byte(hex.EncodeToString(s)),
			[]byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawURLEncoding.EncodeToString(s))}
	}
	// Where a secret may legitimately appear: identities and tokens in the
	// stores that hold them by design are checked below per record kind.
	searchAll := func(where string, b []byte, skip map[string]bool) {
		for name, s := range secrets {
			if skip[name] {
				continue
			}
			for _, f := range forms(s) {
				if len(f) >= 8 && bytes.Contains(b, f) {
					t.Errorf("%s holds the %s", where, name)
					break
				}
			}
		}
	}

	// Logs and metrics.
	logs := srv.stderr.String() + "\n" + srv.stdout.String()
	// Every line: no content, display name or profile data, no token, no
	// sealed sender. The relay's lines (its request log and its own
	// messages) hold no user, device or message id either; the
	// directory's lines in the same stream may name users and devices
	// (docs/spec/directory-api.md §Operations).
	msgIDs := map[string][]byte{}
	for i, env := range append(envs, envA) {
		h, _ := sealed.ParseHeader(env)
		msgIDs[fmt.Sprintf("message id %d", i)] = h.MessageID[:]
		msgIDs[fmt.Sprintf("envelope %d", i)] = env[len(env)-32:]
	}
	msgIDs["blob id"], msgIDs["partial blob id"] = ref.ID[:], pid[:]
	directoryOnly := map[string]bool{"A's sender device": true, "A's sender user": true, "B's user": true}
	for i, line := range strings.Split(logs, "\n") {
		where := fmt.Sprintf("log line %d (%s)", i+1, line)
		for name, id := range msgIDs {
			for _, f := range [][]byte{[]byte(hex.EncodeToString(id)), []byte(base64.RawURLEncoding.EncodeToString(id)), []byte(base64.StdEncoding.EncodeToString(id))} {
				if strings.Contains(line, string(f)) {
					t.Errorf("%s holds the %s", where, name)
				}
			}
		}
		skip := directoryOnly
		if strings.Contains(strings.ToLower(line), "relay") {
			skip = nil
			if strings.Contains(line, hex.EncodeToString(b.cert.Device[:])) {
				t.Errorf("%s holds B's device id", where)
			}
		}
		searchAll(where, []byte(line), skip)
	}
	searchAll("metrics", metrics, nil)

	// Every byte under DATA/relay (tables, value logs, manifests, keys).
	check(t, filepath.WalkDir(filepath.Join(data, relayDir), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Tokens are stored as verifiers and spent nonces, never as such;
		// identities and devices are checked per record below.
		searchAll(path, raw, map[string]bool{"A's identity key": true, "A's sender device": true, "A's device cert": true})
		return nil
	}))

	// Every record, decoded as its store reads it.
	listed := securityList(t)
	seen := map[string]int{}
	dumpStore(t, filepath.Join(data, relayDir, relayMailbox), true, func(k, v []byte) {
		seen["mailbox "+string(k[:1])]++
		decodeMailboxRecord(t, k, v, a)
	})
	dumpStore(t, filepath.Join(data, relayDir, relayPrekeys), false, func(k, v []byte) {
		seen["prekeys "+string(k[:1])]++
		decodePrekeyRecord(t, k, v)
	})
	dumpStore(t, filepath.Join(data, relayDir, relayTokens), false, func(k, v []byte) {
		seen["tokens "+string(k[:1])]++
		decodeTokenRecord(t, k, v)
	})
	dumpBlobs(t, filepath.Join(data, relayDir, relayBlobs), blobs, func(kind string) { seen["blobs "+kind]++ })
	for kind, n := range seen {
		if !listed[kind] {
			t.Errorf("%d records of %q, which SECURITY.md §Relay metadata does not list", n, kind)
		}
	}
	for _, want := range []string{"mailbox M", "mailbox Q", "prekeys s", "prekeys p", "tokens m", "tokens s", "tokens q", "blobs meta", "blobs chunk"} {
		if seen[want] == 0 {
			t.Errorf("no %q record: the exchange did not exercise it (%v)", want, seen)
		}
	}
	t.Logf("records: %v", seen)
}

// securityList returns the (store, key prefix) pairs of the table in
// SECURITY.md §Relay metadata, as "store P".
func securityList(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../SECURITY.md")
	check(t, err)
	_, sec, ok := strings.Cut(string(b), "\n## Relay metadata")
	if !ok {
		t.Fatal("SECURITY.md has no §Relay metadata")
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| (mailbox|prekeys|tokens) \\| `\"(.)\"").FindAllStringSubmatch(sec, -1) {
		out[m[1]+" "+m[2]] = true
	}
	for _, m := range regexp.MustCompile("(?m)^\\| (blobs) \\| `(meta|chunk)`").FindAllStringSubmatch(sec, -1) {
		out[m[1]+" "+m[2]] = true
	}
	if len(out) == 0 {
		t.Fatal("SECURITY.md §Relay metadata lists no record")
	}
	return out
}

// dumpStore opens the badger database in dir read-only and calls f with
// every live key and value, at every version it still holds.
func dumpStore(t *testing.T, dir string, managed bool, f func(k, v []byte)) {
	t.Helper()
	opts := badger.DefaultOptions(dir).WithReadOnly(true).WithLogger(nil)
	var db *badger.DB
	var err error
	var txn *badger.Txn
	if managed {
		db, err = badger.OpenManaged(opts)
		check(t, err)
		txn = db.NewTransactionAt(math.MaxUint64, false)
	} else {
		db, err = badger.Open(opts)
		check(t, err)
		txn = db.NewTransaction(false)
	}
	defer db.Close()
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if item.IsDeletedOrExpired() {
			continue
		}
		v, err := item.ValueCopy(nil)
		check(t, err)
		k := item.KeyCopy(nil)
		if len(k) == 0 {
			t.Errorf("%s: empty key", dir)
			continue
		}
		f(k, v)
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcOK checks a value that ends with crc32c(key || value before it).
func crcOK(k, v []byte) bool {
	if len(v) < 5 || v[0] != 1 {
		return false
	}
	body := v[:len(v)-4]
	return crc32.Update(crc32.Checksum(k, castagnoli), castagnoli, body) == binary.BigEndian.Uint32(v[len(v)-4:])
}

// decodeMailboxRecord decodes a badgermailbox record
// (server/store/mailbox/badgermailbox/schema.go). A message's body must be
// a sealed envelope whose header matches the record, and must not hold
// the sender: sealed sender hides it inside the encryption.
func decodeMailboxRecord(t *testing.T, k, v []byte, sender *enrolledDevice) {
	t.Helper()
	fail := func(msg string) { t.Errorf("mailbox record %q %x: %s", k[:1], k, msg) }
	switch k[0] {
	case 'm':
		if len(k) != 1 || !strings.HasPrefix(string(v), "moat relay mailbox store") {
			fail("bad schema record")
		}
	case 't':
		if len(k) != 1 || len(v) != 1+8+4 || !crcOK(k, v) {
			fail("bad commit record")
		}
	case 'Q':
		if len(k) != 1+16 || len(v) != 1+8+8+4 || !crcOK(k, v) { // head, acknowledgement floor
			fail("bad meta record")
		}
	case 'M':
		if len(k) != 1+16+8 || len(v) < 2+4 || !crcOK(k, v) {
			fail("bad message record")
			return
		}
		switch v[1] {
		case 1: // held: id, expiry, deduplication time, envelope
			if len(v) < 2+16+8+8+1+4 {
				fail("short held message")
				return
			}
			body := v[2+16+8+8 : len(v)-4]
			h, err := sealed.ParseHeader(body)
			if err != nil || !sealed.IsBucket(len(body)) || !bytes.Equal(h.MessageID[:], v[2:18]) {
				fail(fmt.Sprintf("body is not the envelope of its record: %v", err))
			}
			for _, s := range [][]byte{sender.id.Public().Signing.Raw(), sender.cert.User[:]} {
				if bytes.Contains(body, s) {
					fail("the envelope shows its sender")
				}
			}
		case 2: // acknowledged: id, deduplication time, digest
			if len(v) != 2+16+8+32+4 {
				fail("bad acknowledged message")
			}
		default:
			fail("unknown message kind")
		}
	default:
		fail("unknown prefix")
	}
}

// decodePrekeyRecord decodes a badgerprekey record
// (server/store/prekey/badgerprekey/schema.go): each item is a
// PrekeyUpload holding that item alone, as the device signed it.
func decodePrekeyRecord(t *testing.T, k, v []byte) {
	t.Helper()
	fail := func(msg string) { t.Errorf("prekey record %q %x: %s", k[:1], k, msg) }
	switch k[0] {
	case 'v':
		if string(k) != "v" || !crcOK(k, v) || string(v[1:len(v)-4]) != "1" {
			fail("bad version record")
		}
	case 's', 'p':
		n := 1 + 32 + 1
		if k[0] == 'p' {
			n += 4
		}
		if len(k) != n || !crcOK(k, v) {
			fail("bad item record")
			return
		}
		rec := v[1 : len(v)-4]
		if k[0] == 's' {
			if len(rec) < 4 {
				fail("short singleton")
				return
			}
			rec = rec[4:]
		}
		if _, err := bundle.ParseUpload(rec); err != nil {
			fail(fmt.Sprintf("record is not a PrekeyUpload: %v", err))
		}
	case 'x':
		if len(k) != 1+32+1 || len(v) != 1+8+4 || !crcOK(k, v) {
			fail("bad exhausted record")
		}
	default:
		fail("unknown prefix")
	}
}

// decodeTokenRecord decodes a badgertokens record
// (server/store/tokens/badgertokens/schema.go): markers, and the relay's
// quota counters.
func decodeTokenRecord(t *testing.T, k, v []byte) {
	t.Helper()
	switch {
	case string(k) == "v" && string(v) == "1":
	case (k[0] == 'm' || k[0] == 's') && len(k) == 1+32+32 && string(v) == "\x01":
	case k[0] == 'q' && len(k) >= 3 && (k[1] == 'i' || k[1] == 'a') && len(v) == 16 &&
		(k[2] == 'd' && len(k) == 3+32 || k[2] == 't' && len(k) == 3+16):
		// A quota counter (server/relay/quota.go): the day and the count
		// of tokens issued, or a byte bucket's time and level.
	default:
		t.Errorf("token record %x = %x: not in the schema", k, v)
	}
}

// uploadedBlob is what the test uploaded to one blob: its declared size,
// the ciphertext committed from offset 0, whether it was finalized, and
// the tag of its meta record if the test knows it.
type uploadedBlob struct {
	size  int64
	data  []byte
	final bool
	tag   *[32]byte
}

// dumpBlobs reads every file of the fsblob store in dir as the store reads
// it (server/store/blob/fsblob/format.go, docs/spec/relay-storage.md §File
// layout) and calls seen with its kind, "meta" or "chunk". Each meta
// record must hold the declared size and final flag of an uploaded blob
// and a non-zero tag (the hash of its upload token, never the token),
// each chunk exactly the ciphertext the client sent at its offset, and a
// blob's chunks must cover its committed bytes without gap or overlap.
// Any other file is an error (temporary files do not survive a clean
// stop).
func dumpBlobs(t *testing.T, dir string, want map[string]*uploadedBlob, seen func(kind string)) {
	t.Helper()
	committed := map[string]int64{}
	chunks := map[string]int{}
	check(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		fail := func(msg string) { t.Errorf("blob file %s: %s", rel, msg) }
		if len(parts) != 4 || parts[0] != "blobs" || len(parts[2]) != 64 || parts[1] != parts[2][:2] {
			fail("not in the layout")
			return nil
		}
		b, ok := want[parts[2]]
		if !ok {
			fail("a blob the test did not upload")
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch name := parts[3]; {
		case name == "meta":
			seen("meta")
			if len(raw) != 54 || raw[0] != 2 || crc32.Checksum(raw[:50], castagnoli) != binary.BigEndian.Uint32(raw[50:]) {
				fail("bad meta record")
				return nil
			}
			if tag := raw[18:50]; bytes.Equal(tag, make([]byte, 32)) || (b.tag != nil && !bytes.Equal(tag, b.tag[:])) {
				fail(fmt.Sprintf("meta: tag %x, want the hash of the upload token", tag))
			}
			if size := int64(binary.BigEndian.Uint64(raw[1:])); size != b.size || (raw[17] == 1) != b.final {
				fail(fmt.Sprintf("meta: size %d final %d, want %d %v", size, raw[17], b.size, b.final))
			}
			if exp := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[9:]))); time.Until(exp) <= 0 || time.Until(exp) > 31*24*time.Hour {
				fail(fmt.Sprintf("meta: expiry %v", exp))
			}
		case strings.HasSuffix(name, ".chunk") && len(name) == 16+len(".chunk"):
			seen("chunk")
			off, err := strconv.ParseUint(strings.TrimSuffix(name, ".chunk"), 16, 63)
			if err != nil || len(raw) < 28 {
				fail("bad chunk name or size")
				return nil
			}
			tr := raw[len(raw)-28:]
			n := int64(binary.BigEndian.Uint64(tr[16:]))
			nb := (n + 65535) / 65536
			if string(tr[:8]) != "MOATCHK1" || binary.BigEndian.Uint64(tr[8:]) != off || n < 1 || int64(len(raw)) != n+4*nb+28 {
				fail("bad chunk trailer")
				return nil
			}
			data, table := raw[:n], raw[n:n+4*nb]
			if crc32.Update(crc32.Checksum(table, castagnoli), castagnoli, tr[:24]) != binary.BigEndian.Uint32(tr[24:]) {
				fail("bad trailer checksum")
			}
			for i := range nb {
				blk := data[i*65536 : min(n, (i+1)*65536)]
				if crc32.Checksum(blk, castagnoli) != binary.BigEndian.Uint32(table[4*i:]) {
					fail(fmt.Sprintf("bad checksum of block %d", i))
				}
			}
			if int64(off)+n > int64(len(b.data)) || !bytes.Equal(data, b.data[off:int64(off)+n]) {
				fail("chunk is not the ciphertext the client sent")
			}
			committed[parts[2]] += n
			chunks[parts[2]]++
		default:
			fail("not a meta record or a chunk")
		}
		return nil
	}))
	for id, b := range want {
		if committed[id] != int64(len(b.data)) {
			t.Errorf("blob %s…: chunks cover %d bytes, %d committed", id[:8], committed[id], len(b.data))
		}
	}
	t.Logf("blobs: %d, chunks per blob: %v", len(want), chunks)
}

// prekeys are a device's private prekeys and its signed upload.
type prekeys struct {
	spk    *keys.SignedPrekeyPrivateKey
	opks   map[uint32]*keys.OneTimePrekeyPrivateKey
	kems   map[uint32]*keys.KEMPrekeyPrivateKey
	ssk    *keys.SealedSenderPrivateKey
	upload *bundle.Upload
}

func newPrekeys(t *testing.T, d *enrolledDevice) *prekeys {
	t.Helper()
	now := time.Now().Truncate(time.Second).UTC()
	p := &prekeys{opks: map[uint32]*keys.OneTimePrekeyPrivateKey{}, kems: map[uint32]*keys.KEMPrekeyPrivateKey{}}
	p.spk = must(keys.GenerateSignedPrekeyKey(rand.Reader))
	p.ssk = must(keys.GenerateSealedSenderKey(rand.Reader))
	u := &bundle.Upload{
		SignedPrekey:    keys.SignSignedPrekey(1, now, p.spk.Public(), d.id.Signing),
		SealedSenderKey: keys.SignSealedSenderKey(3, now, now.Add(14*24*time.Hour), p.ssk.Public(), d.id.Signing),
	}
	for i := range 2 {
		k := must(keys.GenerateOneTimePrekey(rand.Reader))
		p.opks[uint32(10+i)] = k
		u.OneTimePrekeys = append(u.OneTimePrekeys, keys.SignOneTimePrekey(uint32(10+i), k.Public(), d.id.Signing))
	}
	for i := range 2 {
		k := must(keys.GenerateKEMPrekeyKey(rand.Reader))
		p.kems[uint32(1000+i)] = k
		u.KEMPrekeys = append(u.KEMPrekeys, keys.SignKEMPrekey(uint32(1000+i), now, i == 1, k.Public(), d.id.Signing))
	}
	p.upload = u
	return p
}

func (p *prekeys) responderKeys(m *pqxdh.InitialMessage) pqxdh.ResponderKeys {
	k := pqxdh.ResponderKeys{SignedPrekey: p.spk, KEMPrekey: p.kems[m.KEMPrekeyID]}
	if m.OneTimePrekeyID != nil {
		k.OneTimePrekey = p.opks[*m.OneTimePrekeyID]
	}
	return k
}

func httpBody(t testing.TB, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	check(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	check(t, err)
	return b
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
