package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
)

// envelopeID seals content from d to r under a given message id.
func envelopeID(t testing.TB, from, to *device, id sealed.MessageID, content []byte) []byte {
	t.Helper()
	rec := must(sealed.NewRecipient(to.mailbox(), to.idk.Public().Signing, to.upload.SealedSenderKey, time.Now()))
	return must(rec.Seal(&sealed.Message{MessageID: id, TTL: 3600,
		Sender:    sealed.Sender{Tenant: from.tenant, User: from.user, Device: from.id, Serial: 1, Identity: from.idk.Public()},
		Timestamp: time.Now(), ContentType: sealed.ContentRatchetMessage, Content: content}))
}

// anonTokens issues n anonymous tokens of tenant under issuer and returns
// their SendAuthorizations.
func anonTokens(t testing.TB, issuer *deliverytoken.IssuerPrivateKey, tenant [16]byte, n int) [][]byte {
	t.Helper()
	req, pending, err := deliverytoken.RequestTokens(issuer.Public(), tenant, n)
	ok(t, err)
	resp, _, err := issuer.Issue(req)
	ok(t, err)
	toks, err := pending.Finalize(resp)
	ok(t, err)
	var out [][]byte
	for _, tk := range toks {
		out = append(out, must(relay.AnonymousAuthorization(tk)))
	}
	return out
}

// postBatch posts a SendBatch of items over raw HTTP (Client.SendBatch
// refuses envelopes that do not parse) and returns the HTTP status and
// the parsed results of a 200.
func (w *world) postBatch(items []relay.BatchItem) (int, []relay.BatchResult) {
	w.t.Helper()
	body := must(relay.MarshalSendBatch(items))
	code, _, b := raw(w.t, must(http.NewRequest(http.MethodPost, w.srv.URL+"/relay/v1/send-batch", bytes.NewReader(body))))
	if code != http.StatusOK {
		return code, nil
	}
	rs := must(relay.ParseBatchResults(b))
	if len(rs) != len(items) {
		w.t.Fatalf("%d results for %d items", len(rs), len(items))
	}
	return code, rs
}

// singleSend posts one send over raw HTTP, as postBatch posts an item,
// and returns its result.
func (w *world) singleSend(it relay.BatchItem) relay.BatchResult {
	w.t.Helper()
	req := must(http.NewRequest(http.MethodPost, w.srv.URL+"/relay/v1/send", bytes.NewReader(it.Envelope)))
	if it.Auth != nil {
		req.Header.Set(relay.HeaderSendAuthorization, base64.RawURLEncoding.EncodeToString(it.Auth))
	}
	code, _, b := raw(w.t, req)
	r := relay.BatchResult{Status: code}
	if code == http.StatusOK {
		r.Receipt = must(relay.ParseReceipt(b))
	}
	return r
}

type batchCase struct {
	name string
	item relay.BatchItem
	want int
}

// batchScenario builds a world, the sends that prepare its state, and
// one case per answer of §Send.
func batchScenario(t *testing.T) (w *world, b *device, pre []relay.BatchItem, cases []batchCase) {
	issuer := must(deliverytoken.GenerateIssuerKey())
	iks := deliverytoken.NewMemoryIssuerKeys()
	iks.Add(tenantA, issuer.Public())
	w = newWorld(t, worldOptions{issuers: iks})
	a, b, x := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantB, 0, 0)
	absent := &device{tenant: tenantA, id: [16]byte{0xab, 0x5e}, idk: b.idk, upload: b.upload}
	mac := w.token(b, 1)
	anon := anonTokens(t, issuer, tenantA, 4)
	dup := envelope(t, a, b, []byte("duplicate"))
	cid := sealed.NewMessageID()
	env := envelope(t, a, b, []byte("ok"))
	pre = []relay.BatchItem{{mac, dup}, {anon[0], envelope(t, a, b, []byte("spends token 0"))},
		{mac, envelopeID(t, a, b, cid, []byte("first body"))}}
	long := make([]byte, 400)
	rand.Read(long)
	cases = []batchCase{
		{"MAC", relay.BatchItem{mac, envelope(t, a, b, []byte("mac"))}, 200},
		{"anonymous", relay.BatchItem{anon[1], envelope(t, a, b, []byte("anonymous"))}, 200},
		{"duplicate", relay.BatchItem{mac, dup}, 200},
		{"id conflict", relay.BatchItem{mac, envelopeID(t, a, b, cid, []byte("other body"))}, 409},
		{"spent anonymous", relay.BatchItem{anon[0], envelope(t, a, b, []byte("spent"))}, 403},
		{"anonymous of another tenant", relay.BatchItem{anon[2], envelope(t, a, x, []byte("x"))}, 403},
		{"b's MAC for x", relay.BatchItem{mac, envelope(t, a, x, []byte("x"))}, 403},
		{"unregistered MAC", relay.BatchItem{macAuth(deliverytoken.Token{7}), env}, 403},
		{"unknown device", relay.BatchItem{anon[3], envelope(t, a, absent, []byte("absent"))}, 404},
		{"no authorization", relay.BatchItem{nil, env}, 401},
		{"malformed authorization", relay.BatchItem{[]byte{1, 2, 3}, env}, 400},
		{"long authorization", relay.BatchItem{long, env}, 400},
		{"not a bucket", relay.BatchItem{mac, env[:len(env)-1]}, 400},
		{"too large", relay.BatchItem{mac, make([]byte, 1<<20)}, 413},
		{"malformed header", relay.BatchItem{mac, make([]byte, len(env))}, 400},
	}
	return w, b, pre, cases
}

// TestSendBatchEquivalence: every item of a batch gets the answer a single
// send of it gets, whatever the other items, for every answer of §Send
// (200 new and duplicate, 400, 401, 403, 404, 409, 413), and the mailbox
// holds the same messages afterwards.
func TestSendBatchEquivalence(t *testing.T) {
	ws, bs, pre, cases := batchScenario(t)
	wb, bb, preB, casesB := batchScenario(t)
	var single, batch []relay.BatchResult
	var dupSingle uint64
	for i, it := range pre {
		r := ws.singleSend(it)
		if r.Status != 200 {
			t.Fatalf("single pre %d: %d", i, r.Status)
		}
		if i == 0 {
			dupSingle = r.Receipt.Seq
		}
	}
	for _, c := range cases {
		single = append(single, ws.singleSend(c.item))
	}
	code, preRes := wb.postBatch(preB)
	if code != 200 {
		t.Fatalf("batch pre: %d", code)
	}
	for i, r := range preRes {
		if r.Status != 200 {
			t.Fatalf("batch pre %d: %d", i, r.Status)
		}
	}
	dupBatch := preRes[0].Receipt.Seq
	items := make([]relay.BatchItem, len(casesB))
	for i, c := range casesB {
		items[i] = c.item
	}
	code, batch = wb.postBatch(items)
	if code != 200 {
		t.Fatalf("batch: %d", code)
	}
	seen := map[int]bool{}
	for i, c := range cases {
		s, b := single[i], batch[i]
		seen[b.Status] = true
		if s.Status != c.want || b.Status != c.want {
			t.Errorf("%s: single %d, batch %d, want %d", c.name, s.Status, b.Status, c.want)
			continue
		}
		if c.want == 200 && s.Receipt.Duplicate != b.Receipt.Duplicate {
			t.Errorf("%s: duplicate single %v, batch %v", c.name, s.Receipt.Duplicate, b.Receipt.Duplicate)
		}
		if c.name == "duplicate" && (!b.Receipt.Duplicate || b.Receipt.Seq != dupBatch || s.Receipt.Seq != dupSingle) {
			t.Errorf("duplicate: batch %+v (original %d), single %+v (original %d)", b.Receipt, dupBatch, s.Receipt, dupSingle)
		}
		if b.Status == 200 {
			if err := b.Receipt.Head.Verify(wb.key.Public()); err != nil || b.Receipt.Head.Mailbox != relay.StoreMailboxID(bb.mailbox()) {
				t.Errorf("%s: batch receipt: %v", c.name, err)
			}
		}
	}
	for _, st := range []int{200, 400, 401, 403, 404, 409, 413} {
		if !seen[st] {
			t.Errorf("no case answered %d", st)
		}
	}
	ps := must(bs.c.Fetch(context.Background(), 0, 100))
	pb := must(bb.c.Fetch(context.Background(), 0, 100))
	if len(ps.Messages) != len(pb.Messages) || len(pb.Messages) != len(pre)+2 {
		t.Errorf("mailbox holds %d messages after single sends, %d after batches, want %d", len(ps.Messages), len(pb.Messages), len(pre)+2)
	}
}

// TestSendBatchClient: Client.SendBatch returns one verified receipt per
// accepted item and an *APIError per refused one, and refuses a receipt
// for another mailbox than the item's.
func TestSendBatchClient(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a, b, c := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	tb, tc := w.token(b, 1), w.token(c, 1)
	items := []relay.BatchItem{
		{tb, envelope(t, a, b, []byte("to b"))},
		{tc, envelope(t, a, c, []byte("to c"))},
		{tb, envelope(t, a, c, []byte("b's token for c"))},
	}
	rs, err := w.anon().SendBatch(context.Background(), items)
	ok(t, err)
	if rs[0].Err != nil || rs[1].Err != nil || rs[0].Receipt.Seq != 1 || rs[1].Receipt.Seq != 1 {
		t.Fatalf("accepted items: %+v", rs)
	}
	wantStatus(t, rs[2].Err, http.StatusForbidden)
	if _, err := w.anon().SendBatch(context.Background(), nil); err == nil {
		t.Fatal("empty batch sent")
	}
	if _, err := w.anon().SendBatch(context.Background(), []relay.BatchItem{{tb, []byte("not an envelope")}}); err == nil {
		t.Fatal("unparsable envelope sent")
	}
	// A client with another relay key refuses every receipt.
	other := w.anon()
	other.RelayKey = newWorld(t, worldOptions{}).key.Public()
	rs, err = other.SendBatch(context.Background(), items[:1])
	ok(t, err)
	if rs[0].Err == nil || rs[0].Receipt != nil {
		t.Fatal("receipt under another relay key accepted")
	}
}

// TestT41SendBatchLimits: the per-address, per-mailbox and per-token
// limits count every item, and a limited item does not fail the others
// nor spend its anonymous token.
func TestT41SendBatchLimits(t *testing.T) {
	ctx := context.Background()
	slow := relay.Rate{PerSecond: 0.001, Burst: 3}
	t.Run("address", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{SendPerAddress: slow}})
		a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
		tok := w.token(b, 1)
		var items []relay.BatchItem
		for i := range 5 {
			items = append(items, relay.BatchItem{tok, envelope(t, a, b, fmt.Appendf(nil, "%d", i))})
		}
		rs, err := w.anon().SendBatch(ctx, items)
		ok(t, err)
		for i, r := range rs {
			if i < 3 && r.Err != nil {
				t.Fatalf("item %d: %v", i, r.Err)
			}
			if i >= 3 {
				wantStatus(t, r.Err, http.StatusTooManyRequests)
				if r.Err.(*relay.APIError).RetryAfter < time.Second {
					t.Fatal("no Retry-After")
				}
			}
		}
		_, err = w.anon().SendBatch(ctx, items[:1])
		wantStatus(t, err, http.StatusTooManyRequests) // the request's first item
	})
	t.Run("mailbox", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{SendPerMailbox: relay.Rate{PerSecond: 0.001, Burst: 2}}})
		a, b, c := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
		tb, tc := w.token(b, 1), w.token(c, 1)
		rs := must(w.anon().SendBatch(ctx, []relay.BatchItem{
			{tb, envelope(t, a, b, []byte("1"))}, {tb, envelope(t, a, b, []byte("2"))},
			{tb, envelope(t, a, b, []byte("3"))}, {tc, envelope(t, a, c, []byte("c"))}}))
		if rs[0].Err != nil || rs[1].Err != nil || rs[3].Err != nil {
			t.Fatalf("%+v", rs)
		}
		wantStatus(t, rs[2].Err, http.StatusTooManyRequests)
	})
	t.Run("token", func(t *testing.T) {
		issuer := must(deliverytoken.GenerateIssuerKey())
		iks := deliverytoken.NewMemoryIssuerKeys()
		iks.Add(tenantA, issuer.Public())
		w := newWorld(t, worldOptions{issuers: iks, limits: relay.Limits{SendPerToken: relay.Rate{PerSecond: 4, Burst: 1}}})
		a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
		anon := anonTokens(t, issuer, tenantA, 2)
		tok := w.token(b, 1)
		rs := must(w.anon().SendBatch(ctx, []relay.BatchItem{
			{anon[0], envelope(t, a, b, []byte("1"))}, {anon[1], envelope(t, a, b, []byte("2"))},
			{tok, envelope(t, a, b, []byte("mac"))}}))
		if rs[0].Err != nil || rs[2].Err != nil {
			t.Fatalf("%+v", rs)
		}
		wantStatus(t, rs[1].Err, http.StatusTooManyRequests)
		// The limited item did not spend its token: once the tenant's
		// limit refills, it delivers.
		for {
			_, err := w.anon().Send(ctx, anon[1], envelope(t, a, b, []byte("2 again")))
			if statusOf(err) == http.StatusTooManyRequests {
				time.Sleep(250 * time.Millisecond)
				continue
			}
			ok(t, err)
			break
		}
	})
}

// TestT42SendBatchFrames: a batch request is bounded before it is read
// (411 without Content-Length; 413 above MaxBatchSize, from the headers
// alone) and strictly parsed (400 for 65 items, trailing bytes, another
// encoding); 64 items are accepted.
func TestT42SendBatchFrames(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	tok := w.token(b, 1)
	env := envelope(t, a, b, []byte("x"))
	post := func(body io.Reader, n int64) int {
		req := must(http.NewRequest(http.MethodPost, w.srv.URL+"/relay/v1/send-batch", body))
		req.ContentLength = n
		code, _, _ := raw(t, req)
		return code
	}
	many := make([]relay.BatchItem, relay.MaxBatchItems)
	for i := range many {
		many[i] = relay.BatchItem{tok, env}
	}
	b64 := must(relay.MarshalSendBatch(many))
	if code, rs := w.postBatch(many); code != 200 || rs[0].Status != 200 || !rs[1].Receipt.Duplicate && !rs[0].Receipt.Duplicate {
		t.Fatalf("64 items: %d", code)
	}
	// 65 items: one more, framed by hand.
	item := b64[5 : 5+(len(b64)-5)/64]
	n := len(b64) - 5 + len(item)
	over := append([]byte{b64[0], b64[1], byte(n >> 16), byte(n >> 8), byte(n)}, b64[5:]...)
	over = append(over, item...)
	for name, c := range map[string]struct {
		body []byte
		n    int64
		want int
	}{
		"65 items":      {over, int64(len(over)), 400},
		"trailing byte": {append(append([]byte(nil), b64...), 0), int64(len(b64) + 1), 400},
		"not a batch":   {env, int64(len(env)), 400},
		"too large":     {make([]byte, relay.MaxBatchSize+1), relay.MaxBatchSize + 1, 413},
	} {
		if got := post(bytes.NewReader(c.body), c.n); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
	if got := post(io.MultiReader(bytes.NewReader(b64)), -1); got != http.StatusLengthRequired {
		t.Errorf("no Content-Length: %d", got)
	}
	// T42: a huge declared length is refused from the headers alone
	// (the body never comes).
	hang := hangingBody{done: make(chan struct{})}
	defer close(hang.done)
	for _, n := range []int64{1 << 30, 1 << 62} {
		if got := post(hang, n); got != http.StatusRequestEntityTooLarge {
			t.Errorf("declared %d bytes: %d", n, got)
		}
	}
}

// TestT44SendBatch: each item is authorised by its own token and nothing
// else: a token valid for one item's mailbox does not authorise another
// item's, an anonymous token of tenant A does not authorise tenant B's
// mailbox, and one anonymous token used twice in a batch delivers once.
func TestT44SendBatch(t *testing.T) {
	issuer := must(deliverytoken.GenerateIssuerKey())
	iks := deliverytoken.NewMemoryIssuerKeys()
	iks.Add(tenantA, issuer.Public())
	w := newWorld(t, worldOptions{issuers: iks})
	a, b, c, x := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantB, 0, 0)
	tb := w.token(b, 1)
	anon := anonTokens(t, issuer, tenantA, 2)
	rs := must(w.anon().SendBatch(context.Background(), []relay.BatchItem{
		{tb, envelope(t, a, b, []byte("b"))},
		{tb, envelope(t, a, c, []byte("b's token for c"))},
		{anon[0], envelope(t, a, x, []byte("tenant A's token for tenant B"))},
		{anon[1], envelope(t, a, c, []byte("anonymous"))},
		{anon[1], envelope(t, a, b, []byte("the same anonymous token again"))},
	}))
	if rs[0].Err != nil || rs[3].Err != nil {
		t.Fatalf("valid items: %+v", rs)
	}
	for _, i := range []int{1, 2, 4} {
		wantStatus(t, rs[i].Err, http.StatusForbidden)
	}
	// tenant A's token was not spent by the refused item.
	_, err := w.anon().Send(context.Background(), anon[0], envelope(t, a, b, []byte("token 0")))
	ok(t, err)
}

// TestSendBatchExistenceHidden: in a batch as in a single send, an item
// without a valid token gets the same answer for an existing mailbox, an
// absent device and an unknown tenant, and the relay does not ask its
// device directory.
func TestSendBatchExistenceHidden(t *testing.T) {
	w := newWorld(t, worldOptions{})
	w.srv.Close()
	w.relay.Close()
	dir := &countingDirectory{DeviceDirectory: w.dir}
	w.opts.Directory = dir
	w.start()
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	absent := &device{tenant: tenantA, id: [16]byte{0xab, 0x5e}, idk: b.idk, upload: b.upload}
	stranger := &device{tenant: [16]byte{0x99}, id: [16]byte{0xab, 0x5e}, idk: b.idk, upload: b.upload}
	var items []relay.BatchItem
	for _, auth := range [][]byte{nil, {1, 2, 3}, macAuth(deliverytoken.Token{7})} {
		for _, to := range []*device{b, absent, stranger} {
			items = append(items, relay.BatchItem{auth, envelope(t, a, to, []byte("probe"))})
		}
	}
	before := dir.n.Load()
	code, rs := w.postBatch(items)
	if code != 200 {
		t.Fatal(code)
	}
	for i := 0; i < len(rs); i += 3 {
		if rs[i] != rs[i+1] || rs[i] != rs[i+2] || rs[i].Status == 200 || rs[i].Status == 404 {
			t.Errorf("answers differ: %+v", rs[i:i+3])
		}
	}
	if dir.n.Load() != before {
		t.Error("the device directory was asked")
	}
}

// TestT38SendBatchStoreUnavailable: when the store cannot make writes
// durable, every accepted item is answered 503 with Retry-After and
// nothing is acknowledged.
func TestT38SendBatchStoreUnavailable(t *testing.T) {
	fs := &faultyStore{Store: must(memmailbox.New(memmailbox.Options{}))}
	w := newWorld(t, worldOptions{mbox: fs})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	tok := w.token(b, 1)
	items := []relay.BatchItem{{tok, envelope(t, a, b, []byte("1"))}, {tok, envelope(t, a, b, []byte("2"))}}
	fs.down.Store(true)
	rs := must(w.anon().SendBatch(context.Background(), items))
	for _, r := range rs {
		wantStatus(t, r.Err, http.StatusServiceUnavailable)
		if r.Err.(*relay.APIError).RetryAfter < time.Second {
			t.Fatal("no Retry-After")
		}
	}
	fs.down.Store(false)
	rs = must(w.anon().SendBatch(context.Background(), items))
	for _, r := range rs {
		if r.Err != nil || r.Receipt.Duplicate || r.Receipt.Seq > 2 {
			t.Fatalf("after recovery: %+v (something was stored during the outage)", r)
		}
	}
}
