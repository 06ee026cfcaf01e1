package mls

import (
	"errors"
	"fmt"
)

// Group state-machine failures (RFC 9420 §6, §12). Every error a Group
// method returns for bad input wraps one of them; the Group's state is then
// unchanged.
var (
	// ErrWrongGroup: a message for another group_id.
	ErrWrongGroup = errors.New("mls: message for another group")
	// ErrWrongEpoch: a handshake message not for the current epoch (a stale
	// commit re-delivered, a proposal from an old epoch), or an application
	// message for an epoch no longer or not yet held. *EpochError wraps it.
	ErrWrongEpoch = errors.New("mls: wrong epoch")
	// ErrUnknownSender: a sender that is not a member (a blank or
	// out-of-range leaf index) or not a listed external sender.
	ErrUnknownSender = errors.New("mls: unknown sender")
	// ErrInvalidMembershipTag: a PublicMessage from a member whose
	// membership tag does not verify (§6.2).
	ErrInvalidMembershipTag = errors.New("mls: invalid membership tag")
	// ErrInvalidConfirmationTag: a Commit or GroupInfo whose confirmation
	// tag does not verify (§6.1, §12.4.3.1).
	ErrInvalidConfirmationTag = errors.New("mls: invalid confirmation tag")
	// ErrInvalidProposalList: a Commit whose proposals are invalid
	// (§12.2); *ProposalError wraps it with the reason.
	ErrInvalidProposalList = errors.New("mls: invalid proposal list")
	// ErrInvalidProposal: a single proposal that is invalid (§12.1).
	ErrInvalidProposal = errors.New("mls: invalid proposal")
	// ErrUnknownProposal: a Commit refers to a proposal not in the cache.
	ErrUnknownProposal = errors.New("mls: unknown proposal reference")
	// ErrPathRequired: a Commit without an UpdatePath where one is
	// required (§12.4).
	ErrPathRequired = errors.New("mls: commit requires an update path")
	// ErrMissingPSK: a PSK the Commit or Welcome names is not available.
	ErrMissingPSK = errors.New("mls: pre-shared key not available")
	// ErrPolicy: the application's policy refused a proposal, a commit or
	// a group's parameters (a downgraded cipher suite, a removed policy
	// extension, an Add by a member without the right).
	ErrPolicy = errors.New("mls: refused by policy")
	// ErrNoMatchingKeyPackage: a Welcome that has no secrets for any
	// KeyPackage given to Join (§12.4.3.1).
	ErrNoMatchingKeyPackage = errors.New("mls: welcome not for this key package")
	// ErrInvalidWelcome: a Welcome whose contents do not check out (bad
	// tree, signature, confirmation tag, missing own leaf...).
	ErrInvalidWelcome = errors.New("mls: invalid welcome")
	// ErrInvalidGroupInfo: a GroupInfo that does not verify.
	ErrInvalidGroupInfo = errors.New("mls: invalid group info")
	// ErrGroupInactive: the member was removed, or the group was
	// reinitialised; it can no longer send or process handshake messages.
	ErrGroupInactive = errors.New("mls: group no longer active")
	// ErrPendingCommit: an operation that needs no own commit outstanding
	// (or one that needs one).
	ErrPendingCommit = errors.New("mls: own commit pending")
	// ErrUnexpectedContent: a message of a content type the method does not
	// handle (an application message given to a handshake-only path, or a
	// handshake message to Decrypt).
	ErrUnexpectedContent = errors.New("mls: unexpected content type")
	// ErrUnsupported: a valid message this implementation does not handle
	// (for example a custom proposal type).
	ErrUnsupported = errors.New("mls: unsupported")
)

// EpochError reports a message for an epoch other than the one expected.
// errors.Is(err, ErrWrongEpoch) holds for it.
type EpochError struct {
	Got, Want uint64
}

func (e *EpochError) Error() string {
	return fmt.Sprintf("mls: message for epoch %d, group is at epoch %d", e.Got, e.Want)
}

// Unwrap returns ErrWrongEpoch.
func (e *EpochError) Unwrap() error { return ErrWrongEpoch }

// ProposalError says which rule of §12.1/§12.2 a proposal list breaks.
// errors.Is(err, ErrInvalidProposalList) holds for it.
type ProposalError struct {
	Index  int    // position in the Commit's proposal list, -1 if none
	Reason string // the rule broken, in the words of §12.2
	Err    error  // an underlying cause (leaf validation, policy), or nil
}

func (e *ProposalError) Error() string {
	s := "mls: invalid proposal list"
	if e.Index >= 0 {
		s += fmt.Sprintf(": proposal %d", e.Index)
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrInvalidProposalList and the cause.
func (e *ProposalError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalidProposalList, e.Err}
	}
	return []error{ErrInvalidProposalList}
}

func proposalErr(i int, reason string, cause error) error {
	return &ProposalError{Index: i, Reason: reason, Err: cause}
}
