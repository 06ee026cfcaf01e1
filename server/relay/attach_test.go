package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/memblob"
)

// clock is a settable clock for the relay and the blob store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// attachWorld is a world whose relay serves attachments from a memblob
// store on clk.
func attachWorld(t *testing.T, limits relay.Limits, al relay.AttachmentLimits, bl blob.Limits) (*world, *clock, blob.Store) {
	t.Helper()
	clk := &clock{t: time.Now()}
	store := must(memblob.New(memblob.Options{Limits: bl, Now: clk.now}))
	w := newWorld(t, worldOptions{limits: limits})
	w.srv.Close()
	w.relay.Close()
	w.opts.Blobs = store
	w.opts.AttachmentLimits = al
	w.opts.Now = clk.now
	w.start()
	return w, clk, store
}

func attachErrStatus(t *testing.T, err error, code int) {
	t.Helper()
	wantStatus(t, err, code)
}

func TestAttachmentProtocol(t *testing.T) {
	ctx := context.Background()
	w, clk, _ := attachWorld(t, relay.Limits{}, relay.AttachmentLimits{}, blob.Limits{})
	a := w.newDevice(tenantA, 0, 0)
	data := make([]byte, 300_000)
	rand.Read(data)
	size := int64(len(data))

	up, err := a.c.CreateAttachment(ctx, size, clk.now().Add(time.Hour))
	ok(t, err)
	if up.Expires.UnixMilli() != clk.now().Add(time.Hour).UnixMilli() || up.Token == (relay.UploadToken{}) {
		t.Fatalf("creation %+v", up)
	}
	id := up.ID
	// Not downloadable before it is finalized.
	_, _, err = w.anon().DownloadAttachment(ctx, id, 0)
	attachErrStatus(t, err, http.StatusNotFound)

	c, err := a.c.AppendAttachment(ctx, up, 0, data[:100_000])
	ok(t, err)
	if c != 100_000 {
		t.Fatalf("committed %d", c)
	}
	// A gap names the committed offset.
	_, err = a.c.AppendAttachment(ctx, up, 200_000, data[200_000:])
	var oe *relay.OffsetError
	if !errors.As(err, &oe) || oe.Committed != 100_000 {
		t.Fatalf("gap: %v", err)
	}
	// Other bytes at a committed offset: 409.
	bad := bytes.Clone(data[50_000:150_000])
	bad[0] ^= 1
	_, err = a.c.AppendAttachment(ctx, up, 50_000, bad)
	if !errors.As(err, &oe) || oe.Committed != 100_000 {
		t.Fatalf("mismatch: %v", err)
	}
	// A retry overlapping committed bytes is accepted.
	c, err = a.c.AppendAttachment(ctx, up, 50_000, data[50_000:250_000])
	ok(t, err)
	if c != 250_000 {
		t.Fatalf("committed %d", c)
	}
	st, err := a.c.AttachmentUploadStatus(ctx, up)
	ok(t, err)
	if st.Size != size || st.Committed != 250_000 || st.Final {
		t.Fatalf("status %+v", st)
	}
	// Finalize before the end: 409 with the offset.
	err = a.c.FinalizeAttachment(ctx, up)
	if !errors.As(err, &oe) || oe.Committed != 250_000 {
		t.Fatalf("early finalize: %v", err)
	}
	// Past the declared size: 400.
	_, err = a.c.AppendAttachment(ctx, up, 250_000, make([]byte, size-250_000+1))
	attachErrStatus(t, err, http.StatusBadRequest)
	_, err = a.c.AppendAttachment(ctx, up, 250_000, data[250_000:])
	ok(t, err)
	ok(t, a.c.FinalizeAttachment(ctx, up))
	ok(t, a.c.FinalizeAttachment(ctx, up)) // idempotent
	// A finalized blob refuses appends, even of the same bytes.
	_, err = a.c.AppendAttachment(ctx, up, 0, data[:10])
	if !errors.As(err, &oe) || oe.Committed != size {
		t.Fatalf("append after finalize: %v", err)
	}

	// Anonymous download, whole and by range.
	for _, off := range []int64{0, 1, 123_456, size - 1} {
		body, n, err := w.anon().DownloadAttachment(ctx, id, off)
		ok(t, err)
		got := must(io.ReadAll(body))
		body.Close()
		if n != size-off || !bytes.Equal(got, data[off:]) {
			t.Fatalf("download from %d: %d bytes", off, len(got))
		}
	}
	// Raw ranges.
	for _, tc := range []struct {
		rng  string
		code int
		want []byte
	}{
		{"bytes=10-19", 206, data[10:20]},
		{"bytes=10-99999999", 206, data[10:]},
		{"bytes=" + strconv.FormatInt(size, 10) + "-", 416, nil},
		{"bytes=-5", 416, nil},
		{"bytes=5-4", 416, nil},
		{"bytes=1-2,4-5", 416, nil},
		{"bytes=01-2", 416, nil},
		{"items=1-2", 416, nil},
	} {
		req := must(http.NewRequest("GET", w.srv.URL+"/relay/v1/attachments/"+id.String(), nil))
		req.Header.Set("Range", tc.rng)
		code, _, body := raw(t, req)
		if code != tc.code || (tc.want != nil && !bytes.Equal(body, tc.want)) {
			t.Errorf("Range %q: %d, %d bytes", tc.rng, code, len(body))
		}
	}
	// Bad ids, unknown ids.
	for _, p := range []string{"xyz", strings.Repeat("A", 64), strings.Repeat("0", 63)} {
		if code := w.call("GET", "/relay/v1/attachments/"+p, "", nil); code != 400 {
			t.Errorf("id %q: %d", p, code)
		}
	}
	if code := w.call("GET", "/relay/v1/attachments/"+strings.Repeat("ab", 32), "", nil); code != 404 {
		t.Errorf("unknown id: %d", code)
	}
	// Uploads need an attachments session.
	if code := w.call("POST", "/relay/v1/attachments?size=10&expires=1", "", nil); code != 401 {
		t.Errorf("anonymous create: %d", code)
	}
	if code := w.call("POST", "/relay/v1/attachments?size=10&expires="+strconv.FormatInt(clk.now().Add(time.Hour).UnixMilli(), 10),
		w.session(a, deviceauth.PurposeMailbox), nil); code != 403 {
		t.Errorf("mailbox session: %d", code)
	}
	// The log holds no id and no upload token.
	if strings.Contains(w.logs.String(), id.String()) || strings.Contains(w.logs.String(), relay.FormatUploadToken(&up.Token)) {
		t.Fatal("blob id or upload token in the request log")
	}
	if m := metricsText(t, w); !strings.Contains(m, `moat_relay_attachment_bytes_total{dir="up"}`) ||
		!strings.Contains(m, `moat_relay_attachment_requests_total{op="create",result="ok"} 1`) {
		t.Fatal("attachment metrics missing")
	}
}

// TestT42AttachmentLimits: a declared size over the limit is 413 before
// anything is allocated, a chunk over the limit is 413 before it is read,
// a PATCH without Content-Length is 411, the device and tenant budgets
// answer 507 with Retry-After and give back what a refused creation took,
// and the expiry must be in range.
func TestT42AttachmentLimits(t *testing.T) {
	ctx := context.Background()
	al := relay.AttachmentLimits{MaxSize: 1 << 20, MaxChunk: 64 << 10,
		DeviceBudget: relay.Rate{PerSecond: 0.001, Burst: 3 << 20},
		TenantBudget: relay.Rate{PerSecond: 0.001, Burst: 5 << 20}}
	w, clk, _ := attachWorld(t, relay.Limits{}, al, blob.Limits{MaxSize: 1 << 20, MaxChunk: 64 << 10})
	a, b, c := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	x := w.newDevice(tenantB, 0, 0)
	exp := clk.now().Add(time.Hour)

	_, err := a.c.CreateAttachment(ctx, 1<<20+1, exp)
	attachErrStatus(t, err, http.StatusRequestEntityTooLarge)
	_, err = a.c.CreateAttachment(ctx, 1<<40, exp)
	attachErrStatus(t, err, http.StatusRequestEntityTooLarge)
	for _, q := range []string{"size=0&expires=1", "size=-1&expires=1", "size=010&expires=1", "size=10", "size=10&expires=1&x=1", "size=1e3&expires=1"} {
		if code := w.call("POST", "/relay/v1/attachments?"+q, w.session(a, deviceauth.PurposeAttachments), nil); code != 400 {
			t.Errorf("%s: %d", q, code)
		}
	}
	_, err = a.c.CreateAttachment(ctx, 10, clk.now().Add(31*24*time.Hour))
	attachErrStatus(t, err, http.StatusBadRequest)
	_, err = a.c.CreateAttachment(ctx, 10, clk.now().Add(-time.Second))
	attachErrStatus(t, err, http.StatusBadRequest)

	up, err := a.c.CreateAttachment(ctx, 1<<20, exp)
	ok(t, err)
	id := up.ID
	// A chunk over MaxChunk: 413 at once, from Content-Length.
	_, err = a.c.AppendAttachment(ctx, up, 0, make([]byte, 64<<10+1))
	attachErrStatus(t, err, http.StatusRequestEntityTooLarge)
	// No Content-Length: 411.
	sess := w.session(a, deviceauth.PurposeAttachments)
	req := must(http.NewRequest("PATCH", w.srv.URL+"/relay/v1/attachments/"+id.String()+"/upload", io.MultiReader(strings.NewReader("abc"))))
	req.Header.Set("Authorization", sess)
	req.Header.Set(relay.HeaderUploadOffset, "0")
	req.Header.Set(relay.HeaderUploadToken, relay.FormatUploadToken(&up.Token))
	if code, _, _ := raw(t, req); code != http.StatusLengthRequired {
		t.Errorf("no Content-Length: %d", code)
	}
	// A declared length of 1 GiB is refused before a byte is read: the
	// answer comes while the client has sent only the headers.
	conn := must(net.Dial("tcp", w.srv.Listener.Addr().String()))
	defer conn.Close()
	fmt.Fprintf(conn, "PATCH /relay/v1/attachments/%s/upload HTTP/1.1\r\nHost: relay.test\r\nAuthorization: %s\r\nUpload-Offset: 0\r\nContent-Length: %d\r\n\r\n", id, sess, 1<<30)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	ok(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 GiB chunk: %d", resp.StatusCode)
	}
	// Bad offsets.
	for _, off := range []string{"", "-1", "01", "x"} {
		req := must(http.NewRequest("PATCH", w.srv.URL+"/relay/v1/attachments/"+id.String()+"/upload", strings.NewReader("abc")))
		req.Header.Set("Authorization", sess)
		req.Header.Set(relay.HeaderUploadOffset, off)
		req.Header.Set(relay.HeaderUploadToken, relay.FormatUploadToken(&up.Token))
		if code, _, _ := raw(t, req); code != 400 {
			t.Errorf("offset %q: %d", off, code)
		}
	}

	// Device budget: a has 3 MiB, 1 MiB taken; 2 more fit, the next does not.
	for range 2 {
		_, err = a.c.CreateAttachment(ctx, 1<<20, exp)
		ok(t, err)
	}
	_, err = a.c.CreateAttachment(ctx, 1<<20, exp)
	attachErrStatus(t, err, http.StatusInsufficientStorage)
	if ae := err.(*relay.APIError); ae.RetryAfter < time.Second {
		t.Fatalf("Retry-After %v", ae.RetryAfter)
	}
	// b of the same tenant: the tenant has 5 MiB, 3 taken; 2 fit.
	for range 2 {
		_, err = b.c.CreateAttachment(ctx, 1<<20, exp)
		ok(t, err)
	}
	_, err = c.c.CreateAttachment(ctx, 1<<20, exp)
	attachErrStatus(t, err, http.StatusInsufficientStorage)
	// c's refused creation took nothing from c: a small one still fits
	// c's budget but not the tenant's.
	_, err = c.c.CreateAttachment(ctx, 1, exp)
	attachErrStatus(t, err, http.StatusInsufficientStorage)
	// Another tenant is served.
	_, err = x.c.CreateAttachment(ctx, 1<<20, exp)
	ok(t, err)
	m := metricsText(t, w)
	for _, s := range []string{`scope="device"} 1`, `scope="tenant"} 2`, `scope="size"} 4`} {
		if !strings.Contains(m, "moat_relay_attachment_quota_refused_total{"+s) {
			t.Errorf("metrics lack %s", s)
		}
	}
}

// TestAttachmentRateLimited: attachment calls count against the device's
// request limit (429).
func TestAttachmentRateLimited(t *testing.T) {
	ctx := context.Background()
	w, clk, _ := attachWorld(t, relay.Limits{PerDevice: relay.Rate{PerSecond: 0.001, Burst: 5}}, relay.AttachmentLimits{}, blob.Limits{})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	var err error
	for range 10 {
		if _, err = a.c.CreateAttachment(ctx, 10, clk.now().Add(time.Hour)); err != nil {
			break
		}
	}
	attachErrStatus(t, err, http.StatusTooManyRequests)
	_, err = b.c.CreateAttachment(ctx, 10, clk.now().Add(time.Hour))
	ok(t, err)
}

// TestAttachmentExpiry: an expired blob is gone for download, upload and
// status, and the sweep deletes it.
func TestAttachmentExpiry(t *testing.T) {
	ctx := context.Background()
	w, clk, _ := attachWorld(t, relay.Limits{}, relay.AttachmentLimits{SweepInterval: -1}, blob.Limits{})
	a := w.newDevice(tenantA, 0, 0)
	done, err := a.c.CreateAttachment(ctx, 3, clk.now().Add(time.Minute))
	ok(t, err)
	_, err = a.c.AppendAttachment(ctx, done, 0, []byte("abc"))
	ok(t, err)
	ok(t, a.c.FinalizeAttachment(ctx, done))
	pending, err := a.c.CreateAttachment(ctx, 3, clk.now().Add(time.Minute))
	ok(t, err)
	later, err := a.c.CreateAttachment(ctx, 3, clk.now().Add(time.Hour))
	ok(t, err)
	_, _, err = w.anon().DownloadAttachment(ctx, done.ID, 0)
	ok(t, err)

	clk.add(time.Minute)
	_, _, err = w.anon().DownloadAttachment(ctx, done.ID, 0)
	attachErrStatus(t, err, http.StatusNotFound)
	_, err = a.c.AppendAttachment(ctx, pending, 0, []byte("abc"))
	attachErrStatus(t, err, http.StatusNotFound)
	_, err = a.c.AttachmentUploadStatus(ctx, done)
	attachErrStatus(t, err, http.StatusNotFound)
	n, err := w.relay.SweepAttachments(ctx)
	ok(t, err)
	if n != 2 {
		t.Fatalf("swept %d, want 2", n)
	}
	_, err = a.c.AttachmentUploadStatus(ctx, later)
	ok(t, err)
	if m := metricsText(t, w); !strings.Contains(m, "moat_relay_attachment_swept_total 2") {
		t.Fatal("sweep not counted")
	}
}

// TestAttachmentsNotServed: a relay without a blob store answers 404.
func TestAttachmentsNotServed(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := w.newDevice(tenantA, 0, 0)
	_, err := a.c.CreateAttachment(context.Background(), 10, time.Now().Add(time.Hour))
	attachErrStatus(t, err, http.StatusNotFound)
	if code := w.call("GET", "/relay/v1/attachments/"+strings.Repeat("ab", 32), "", nil); code != 404 {
		t.Fatalf("download: %d", code)
	}
}

// FuzzAttachmentRange: a Range value the relay accepts names a non-empty
// range inside the blob, and its canonical form parses to the same range.
func FuzzAttachmentRange(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=1-2", "bytes=5-4", "bytes=-1", "bytes=01-", "bytes=9223372036854775807-", "bytes=1-2,3-4"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, v string, size int64) {
		if size < 1 {
			return
		}
		off, n, ok := relay.ParseRange(v, size)
		if !ok {
			return
		}
		if off < 0 || n < 1 || off >= size || n > size-off {
			t.Fatalf("%q in %d: %d+%d", v, size, off, n)
		}
		canon := "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+n-1, 10)
		if o2, n2, ok := relay.ParseRange(canon, size); !ok || o2 != off || n2 != n {
			t.Fatalf("%q: canonical %q parses to %d+%d", v, canon, o2, n2)
		}
	})
}

// TestAttachmentSweeper: the relay's sweeper deletes expired blobs on its
// own.
func TestAttachmentSweeper(t *testing.T) {
	ctx := context.Background()
	w, clk, store := attachWorld(t, relay.Limits{}, relay.AttachmentLimits{SweepInterval: time.Millisecond}, blob.Limits{})
	a := w.newDevice(tenantA, 0, 0)
	up, err := a.c.CreateAttachment(ctx, 3, clk.now().Add(time.Minute))
	ok(t, err)
	id := up.ID
	clk.add(time.Minute)
	// Wait for a sweep (a hang guard, not a timing assertion).
	for guard := time.Now().Add(time.Minute); !strings.Contains(metricsText(t, w), "moat_relay_attachment_swept_total 1"); {
		if time.Now().After(guard) {
			t.Fatal("the sweeper did not delete the expired blob")
		}
		time.Sleep(time.Millisecond)
	}
	// Gone from the store itself, not only hidden as expired: a clock
	// set back would find nothing.
	clk.add(-time.Hour)
	if _, err := store.Info(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("after the sweep: %v", err)
	}
}
