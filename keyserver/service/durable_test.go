package service_test

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store"
)

// crash stops the service without publishing and starts it again over
// what its store holds: with badger, a copy of the database directory
// taken while the store is open (the files a SIGKILL leaves), with the
// memstore, the same store under a new service.
func (w *world) crash() {
	w.t.Helper()
	w.srv.Close()
	if w.opts.badger {
		db := filepath.Join(w.dir, "db")
		img := filepath.Join(w.t.TempDir(), "db")
		ok(w.t, copyDir(db, img))
		ok(w.t, w.st.Close()) // whatever Close writes is not in the image
		ok(w.t, os.RemoveAll(db))
		ok(w.t, os.Rename(img, db))
	}
	w.start()
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		return copySparse(p, out)
	})
}

// copySparse copies a file's data extents (badger preallocates its value
// log and memtable files: gigabytes of holes).
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	const seekData, seekHole = 3, 4 // Linux lseek
	for off := int64(0); off < fi.Size(); {
		data, err := in.Seek(off, seekData)
		if err != nil {
			break // no data after off (ENXIO)
		}
		hole, err := in.Seek(data, seekHole)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	if err := out.Truncate(fi.Size()); err != nil {
		return err
	}
	return out.Close()
}

// wrongGuess returns code with another secret: same id.
func wrongGuess(t testing.TB, code *org.EnrolmentCode, i byte) *org.EnrolmentCode {
	raw := code.Marshal()
	raw[2+16+16] ^= 1 + i
	return must(org.ParseEnrolmentCode(raw))
}

// TestAcknowledgedChangesSurviveCrash: admin operations, an enrolment
// and failed code guesses acknowledged after the last epoch are in force
// after the service is stopped without publishing and restarted (a
// revoked device stays refused, an enrolled one accepted, a new user and
// department exist, the failures still count towards the code's limit),
// and the next epoch publishes them; with the memstore and with badger.
func TestAcknowledgedChangesSurviveCrash(t *testing.T) {
	for _, badger := range []bool{false, true} {
		name := "memstore"
		if badger {
			name = "badger"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, worldOptions{seed: 91, badger: badger,
				limits: service.Limits{Enrol: service.Rate{PerSecond: 1e6, Burst: 1e6}}})
			alice := w.addUser("Alice")
			carol := w.addUser("Carol")
			d1 := w.mustEnrol(alice)
			w.publish()

			// Acknowledged, not published.
			var rv service.RevokeDeviceResponse
			ok(t, w.api().AdminOp(ctx, "revoke-device", service.RevokeDeviceRequest{User: alice.String(), Device: d1.cert.Device.String()}, &rv))
			d2 := w.mustEnrol(carol)
			bob := w.addUser("Bob")
			var out service.OKResponse
			ok(t, w.api().AdminOp(ctx, "add-department", service.DepartmentRequest{Name: "Engineering"}, &out))
			dept := out.Department
			ok(t, w.api().AdminOp(ctx, "set-department", service.DepartmentRequest{User: bob.String(), Department: dept}, &out))
			code := w.issueCode(bob)
			dBob := w.newDeviceKeys(bob)
			for i := range org.DefaultCodeFailureLimit - 1 {
				guess := wrongGuess(t, code, byte(i))
				_, err := w.api().Enrol(ctx, guess, must(org.NewEnrolmentRequest(guess, dBob.id, dBob.mls)))
				wantStatus(t, err, http.StatusForbidden)
			}
			now := w.clk.Now()
			if _, on := w.ten().Device(d1.cert.Device, now); on {
				t.Fatal("revoked device accepted before the crash")
			}
			head := w.ten().Head().Epoch

			w.crash()
			ten := w.ten()
			if ten.Head().Epoch != head {
				t.Fatalf("head %d after the restart, want %d", ten.Head().Epoch, head)
			}
			if _, on := ten.Device(d1.cert.Device, now); on {
				t.Fatal("the revoked device is accepted again after the restart")
			}
			if _, on := ten.Device(d2.cert.Device, now); !on {
				t.Fatal("the device enrolled before the restart is unknown after it")
			}
			// The failures still count: one more wrong guess locks the
			// code, and the right secret no longer redeems it.
			guess := wrongGuess(t, code, 9)
			_, err := w.api().Enrol(ctx, guess, must(org.NewEnrolmentRequest(guess, dBob.id, dBob.mls)))
			wantStatus(t, err, http.StatusForbidden)
			_, err = w.api().Enrol(ctx, code, must(org.NewEnrolmentRequest(code, dBob.id, dBob.mls)))
			wantStatus(t, err, http.StatusForbidden)
			// Bob and his department exist: a code is issued for him, and
			// the department is not empty.
			w.issueCode(bob)
			err = w.api().AdminOp(ctx, "remove-department", service.DepartmentRequest{Department: dept}, &out)
			wantStatus(t, err, http.StatusConflict)

			// The next epoch publishes all of it.
			d2.api.BaseURL = w.srv.URL
			w.publish()
			res := must(w.lookup(d2, carol))
			if len(res.Devices) != 1 || res.Devices[0].Device != d2.cert.Device {
				t.Fatalf("published devices of Carol: %d, want the one enrolled before the restart", len(res.Devices))
			}
			res = must(w.lookup(d2, alice))
			if len(res.Devices) != 0 {
				t.Fatalf("published devices of Alice: %d, want none (revoked)", len(res.Devices))
			}
			for _, c := range res.Value.Certificates {
				if c.Device == d1.cert.Device {
					t.Fatal("the revoked device is published as current")
				}
			}
			// And a restart after that epoch restores the published state
			// alone: nothing pending is applied twice.
			w.crash()
			if _, on := w.ten().Device(d2.cert.Device, w.clk.Now()); !on {
				t.Fatal("device lost after the second restart")
			}
			if _, on := w.ten().Device(d1.cert.Device, w.clk.Now()); on {
				t.Fatal("revoked device accepted after the second restart")
			}
		})
	}
}

// TestApprovedRotationSurvivesCrash: a CA or log key rotation approved
// (acknowledged) after the last epoch is still applied after a crash and
// restart, with the new key kept by the key store, and the next epoch
// publishes it; the service restarts again after that.
func TestApprovedRotationSurvivesCrash(t *testing.T) {
	for i, op := range []string{"rotate-ca", "rotate-log-key"} {
		t.Run(op, func(t *testing.T) {
			w := newWorld(t, worldOptions{seed: 92 + uint64(i), badger: true})
			alice := w.addUser("Alice")
			w.mustEnrol(alice)
			w.publish()
			old := w.ten().TrustBundle()
			p := w.propose(op, 0)
			must(w.approveRotation(op, 0, p))
			out := must(w.approveRotation(op, 1, p))
			if !out.Applied {
				t.Fatal("not applied with two approvals")
			}
			w.crash()
			if w.ten().TrustBundle().Sequence != old.Sequence {
				t.Fatal("the rotation is published without an epoch")
			}
			w.publish()
			nb := w.ten().TrustBundle()
			if nb.Sequence != old.Sequence+1 {
				t.Fatalf("bundle sequence %d after the epoch, want %d", nb.Sequence, old.Sequence+1)
			}
			if op == "rotate-ca" && (nb.CA.Equal(old.CA) || nb.CA.String() != p.Key) {
				t.Fatal("the published bundle does not name the new CA key")
			}
			if op == "rotate-log-key" && (nb.Log.Equal(old.Log) || nb.Log.String() != p.Key) {
				t.Fatal("the published bundle does not name the new log key")
			}
			w.publish() // signed by the new log key, if rotated
			w.crash()
			w.publish()
		})
	}
}

// TestEnrolmentFailuresSurviveCrash: wrong secrets answered 403 still
// count towards the code's failure limit after a crash, so that crashing
// the service does not reset it: the code locks at the limit, and its
// right secret then fails.
func TestEnrolmentFailuresSurviveCrash(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 95, badger: true, limits: service.Limits{Enrol: service.Rate{PerSecond: 1e6, Burst: 1e6}}})
	bob := w.addUser("Bob")
	code := w.issueCode(bob)
	w.publish() // the code and its zero failures are published state
	d := w.newDeviceKeys(bob)
	try := func(c *org.EnrolmentCode) error {
		_, err := w.api().Enrol(ctx, c, must(org.NewEnrolmentRequest(c, d.id, d.mls)))
		return err
	}
	for i := range org.DefaultCodeFailureLimit - 1 {
		wantStatus(t, try(wrongGuess(t, code, byte(i))), http.StatusForbidden)
	}
	w.crash()
	wantStatus(t, try(wrongGuess(t, code, 9)), http.StatusForbidden) // the limit-th failure
	wantStatus(t, try(code), http.StatusForbidden)                   // locked
}

// TestUserRecordsSmallAfterRestart: an epoch stores a user's record with
// a reference to the certificate its value holds, not the certificate
// (docs/spec/org.md §Tenant state records), and a restart over that store
// reads the certificate back from the value: the device is known, and
// the next epoch publishes the same certificates.
func TestUserRecordsSmallAfterRestart(t *testing.T) {
	for _, badger := range []bool{false, true} {
		t.Run(map[bool]string{false: "memstore", true: "badger"}[badger], func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, worldOptions{seed: 93, badger: badger})
			alice := w.addUser("Alice")
			d1 := w.mustEnrol(alice)
			w.publish()
			var key store.TenantKey
			key[0] = 0x06 // org's user record kind
			copy(key[1:], alice[:])
			size := -1
			ok(t, w.st.TenantRecords(ctx, w.tenant, func(k store.TenantKey, v []byte) error {
				if k == key {
					size = len(v)
				}
				return nil
			}))
			cert := must(d1.cert.Marshal())
			if size < 0 || size >= len(cert) {
				t.Fatalf("Alice's record: %d bytes, certificate %d", size, len(cert))
			}
			w.crash()
			if _, on := w.ten().Device(d1.cert.Device, w.clk.Now()); !on {
				t.Fatal("device unknown after the restart")
			}
			d1.api.BaseURL = w.srv.URL
			res := must(w.lookup(d1, alice))
			if len(res.Devices) != 1 || res.Devices[0].Device != d1.cert.Device {
				t.Fatalf("published devices of Alice after the restart: %d", len(res.Devices))
			}
		})
	}
}
