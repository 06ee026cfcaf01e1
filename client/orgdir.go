package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// The organisation's directory (docs/spec/org.md §Org chart): the
// departments and the users with their display names, from the CA-signed
// org chart statement, looked up under the org label and verified against
// the directory's witnessed log (docs/spec/directory.md §Org labels) like
// any user label. It is what a UI lists as "people"; whether a user's
// devices verify is a separate lookup of the user's own label (Verify).

// DepartmentID names a department of the org chart.
type DepartmentID = org.DepartmentID

// Department is a department of the org chart.
type Department struct {
	ID     DepartmentID
	Parent DepartmentID // zero for a top-level department
	Name   string
	// Path is the department's name under its ancestors', outermost
	// first, joined by " / ".
	Path string
}

// DirectoryUser is a user of the org chart.
type DirectoryUser struct {
	User        UserID
	DisplayName string
	Department  DepartmentID // zero for none
	// DepartmentPath is the department's Path; empty for none.
	DepartmentPath string
	// Verification is the user's verification status now, if
	// OrgDirectory was asked to verify the users; nil otherwise.
	Verification *Verification
}

// OrgDirectory is the organisation's verified directory.
type OrgDirectory struct {
	// Epoch is the directory epoch the org chart was verified at.
	Epoch       uint64
	Departments []Department    // sorted by Path
	Users       []DirectoryUser // sorted by department path, then display name
}

// OrgDirectory returns the organisation's departments and users from the
// verified org chart. With verify, it also looks every user up and
// verifies the answer (Verify), filling in each user's Verification: one
// directory lookup per user. An org chart that cannot be fetched or does
// not verify is an error; so is an organisation without one.
func (c *Client) OrgDirectory(ctx context.Context, verify bool) (*OrgDirectory, error) {
	d, err := c.orgDirectory(ctx)
	if err != nil {
		return nil, err
	}
	if !verify {
		return d, nil
	}
	for i := range d.Users {
		v, err := c.Verify(ctx, d.Users[i].User)
		if err != nil {
			return nil, err
		}
		d.Users[i].Verification = v
	}
	return d, nil
}

// ErrNoOrgChart: the directory publishes no org chart.
var ErrNoOrgChart = errors.New("client: the directory publishes no org chart")

func (c *Client) orgDirectory(ctx context.Context) (*OrgDirectory, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	chart, epoch, err := c.orgChart(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.update(func(localstore.Tx) error { return nil }); err != nil {
		return nil, err
	}
	return newOrgDirectory(chart, epoch), nil
}

// orgChart fetches and verifies the org chart. c.mu is held.
func (c *Client) orgChart(ctx context.Context) (*org.OrgChart, uint64, error) {
	resp, err := c.dir.LookupOrgFrom(ctx, org.OrgLabelOrgChart, c.kt)
	if err != nil {
		return nil, 0, fmt.Errorf("client: fetching the org chart: %w", err)
	}
	res, err := c.kt.VerifyOrgLookup(org.OrgLabelOrgChart, resp, c.now())
	if errors.Is(err, kt.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: %w", ErrNoOrgChart, err)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("client: the org chart does not verify: %w", err)
	}
	chart, isChart := res.Statement.(*org.OrgChart)
	if !isChart || chart == nil {
		return nil, 0, ErrNoOrgChart
	}
	return chart, res.Epoch, nil
}

// newOrgDirectory describes a verified org chart.
func newOrgDirectory(chart *org.OrgChart, epoch uint64) *OrgDirectory {
	byID := make(map[DepartmentID]org.Department, len(chart.Departments))
	for _, d := range chart.Departments {
		byID[d.ID] = d
	}
	path := func(id DepartmentID) string {
		var parts []string
		// The chart's departments form a tree (org.md §Org chart); the
		// bound guards against a cycle all the same.
		for range len(chart.Departments) {
			d, found := byID[id]
			if !found {
				break
			}
			parts = append(parts, d.Name)
			id = d.Parent
		}
		slices.Reverse(parts)
		return strings.Join(parts, " / ")
	}
	out := &OrgDirectory{Epoch: epoch}
	for _, d := range chart.Departments {
		out.Departments = append(out.Departments, Department{ID: d.ID, Parent: d.Parent, Name: d.Name, Path: path(d.ID)})
	}
	for _, m := range chart.Members {
		u := DirectoryUser{User: m.User, DisplayName: m.DisplayName, Department: m.Department}
		if m.Department != (DepartmentID{}) {
			u.DepartmentPath = path(m.Department)
		}
		out.Users = append(out.Users, u)
	}
	slices.SortStableFunc(out.Departments, func(a, b Department) int { return strings.Compare(a.Path, b.Path) })
	slices.SortStableFunc(out.Users, func(a, b DirectoryUser) int {
		if c := strings.Compare(a.DepartmentPath, b.DepartmentPath); c != 0 {
			return c
		}
		return strings.Compare(a.DisplayName, b.DisplayName)
	})
	return out
}

// FindUser returns the users of the verified org chart whose display name
// is name (case-insensitively): what a UI resolves a typed name to. More
// than one is ambiguous; the caller asks which.
func (c *Client) FindUser(ctx context.Context, name string) ([]DirectoryUser, error) {
	d, err := c.orgDirectory(ctx)
	if err != nil {
		return nil, err
	}
	var out []DirectoryUser
	for _, u := range d.Users {
		if strings.EqualFold(u.DisplayName, name) {
			out = append(out, u)
		}
	}
	return out, nil
}
