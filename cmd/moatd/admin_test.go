package main

import (
	"testing"

	"github.com/moat-im/moat/keyserver/service"
)

// TestAdminCommandsCoverOperations: every admin operation of the HTTP API
// (docs/spec/directory-api.md §Admin operations) has a moatd admin
// subcommand of the same name, but get-roster, which update-roster calls.
func TestAdminCommandsCoverOperations(t *testing.T) {
	cmds := map[string]bool{}
	for _, c := range newAdminCmd().Commands() {
		cmds[c.Name()] = true
	}
	for _, op := range service.AdminOperations() {
		if op != "get-roster" && !cmds[op] {
			t.Errorf("admin operation %s has no moatd admin subcommand", op)
		}
	}
}
