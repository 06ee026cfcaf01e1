package mls

import (
	"fmt"
	"maps"
	"slices"
)

// memberStats counts, over the members of an epoch, the credential types
// in use and how many members support each credential type, so that the
// two cross-member checks of §7.3 — "the credential type is supported by
// all members" and "this LeafNode supports all the credential types in
// use" — cost O(1) per leaf instead of a scan of the tree. It is kept in
// step with the tree by every leaf change a Commit makes.
type memberStats struct {
	members   int
	inUseN    map[CredentialType]int // members whose credential has the type
	supported map[CredentialType]int // members listing the type in capabilities
}

func computeMemberStats(t *publicTree) memberStats {
	m := memberStats{inUseN: map[CredentialType]int{}, supported: map[CredentialType]int{}}
	for _, ln := range t.leaves {
		if ln != nil {
			m.add(ln)
		}
	}
	return m
}

func (m *memberStats) clone() memberStats {
	return memberStats{members: m.members, inUseN: maps.Clone(m.inUseN), supported: maps.Clone(m.supported)}
}

// add counts a leaf entering the tree.
func (m *memberStats) add(ln *LeafNode) {
	m.members++
	m.inUseN[ln.Credential.Type]++
	for _, t := range uniqueCreds(ln.Capabilities.Credentials) {
		m.supported[t]++
	}
}

// remove uncounts a leaf leaving the tree.
func (m *memberStats) remove(ln *LeafNode) {
	m.members--
	if m.inUseN[ln.Credential.Type]--; m.inUseN[ln.Credential.Type] <= 0 {
		delete(m.inUseN, ln.Credential.Type)
	}
	for _, t := range uniqueCreds(ln.Capabilities.Credentials) {
		if m.supported[t]--; m.supported[t] <= 0 {
			delete(m.supported, t)
		}
	}
}

// uniqueCreds drops repeated entries so a leaf listing a type twice counts
// once.
func uniqueCreds(c []CredentialType) []CredentialType {
	for i := 1; i < len(c); i++ {
		if slices.Contains(c[:i], c[i]) {
			out := slices.Clone(c)
			slices.Sort(out)
			return slices.Compact(out)
		}
	}
	return c
}

// inUse lists the credential types in use, sorted.
func (m *memberStats) inUse() []CredentialType {
	return slices.Sorted(maps.Keys(m.inUseN))
}

// checkCredentialSupport checks the cross-member rules of §7.3 for ln
// joining the members m counts (ln's own old leaf, if it replaces one,
// must already have been removed from m): every member supports ln's
// credential type, and ln supports every type in use.
func (m *memberStats) checkCredentialSupport(ln *LeafNode) error {
	if m.members > 0 && m.supported[ln.Credential.Type] < m.members {
		return fmt.Errorf("%w: credential type 0x%04x not supported by every member", ErrLeafNodeValidation, uint16(ln.Credential.Type))
	}
	for t := range m.inUseN {
		if !slices.Contains(ln.Capabilities.Credentials, t) {
			return fmt.Errorf("%w: credential type 0x%04x in use not supported", ErrLeafNodeValidation, uint16(t))
		}
	}
	return nil
}
