package client_test

import (
	"context"
	"testing"

	"github.com/moat-im/moat/keyserver/service"
)

// TestOrgDirectory: the org chart lists the departments with their paths
// and every user with display name and department; with verify, each
// user's verification status: Alice and Bob verified with their devices,
// Carol (no device) not, with the reason. FindUser resolves names
// case-insensitively.
func TestOrgDirectory(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	carol := w.s.AddUser("Carol")
	var eng, plat service.OKResponse
	w.s.AdminOp("add-department", service.DepartmentRequest{Name: "Engineering"}, &eng)
	w.s.AdminOp("add-department", service.DepartmentRequest{Name: "Platform", Parent: eng.Department}, &plat)
	w.s.AdminOp("set-department", service.DepartmentRequest{User: w.bob.String(), Department: plat.Department}, &service.OKResponse{})
	w.s.Publish()

	d, err := w.a1.OrgDirectory(ctx, false)
	ok(t, err)
	if d.Epoch == 0 || len(d.Departments) != 2 || d.Departments[0].Path != "Engineering" || d.Departments[1].Path != "Engineering / Platform" {
		t.Fatalf("departments %+v at epoch %d", d.Departments, d.Epoch)
	}
	if len(d.Users) != 3 {
		t.Fatalf("users %+v", d.Users)
	}
	// Users without a department first, by name, then by department path.
	want := []struct {
		name, path string
	}{{"Alice Liddell", ""}, {"Carol", ""}, {"Bob Dobbs", "Engineering / Platform"}}
	for i, u := range d.Users {
		if u.DisplayName != want[i].name || u.DepartmentPath != want[i].path || u.Verification != nil {
			t.Fatalf("user %d: %+v, want %s in %q", i, u, want[i].name, want[i].path)
		}
	}

	d, err = w.a1.OrgDirectory(ctx, true)
	ok(t, err)
	for _, u := range d.Users {
		v := u.Verification
		if v == nil || v.User != u.User {
			t.Fatalf("user %s: verification %+v", u.DisplayName, v)
		}
		switch u.User {
		case w.alice:
			if !v.Verified || len(v.Devices) != 2 {
				t.Fatalf("Alice: %+v", v)
			}
		case w.bob:
			if !v.Verified || len(v.Devices) != 1 {
				t.Fatalf("Bob: %+v", v)
			}
		case carol:
			if v.Verified || v.Reason == "" {
				t.Fatalf("Carol: %+v", v)
			}
		}
	}

	found, err := w.b1.FindUser(ctx, "alice liddell")
	ok(t, err)
	if len(found) != 1 || found[0].User != w.alice {
		t.Fatalf("FindUser: %+v", found)
	}
	found, err = w.b1.FindUser(ctx, "nobody")
	ok(t, err)
	if len(found) != 0 {
		t.Fatalf("FindUser of an unknown name: %+v", found)
	}
}
