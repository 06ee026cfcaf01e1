package deviceauth

import "errors"

// Errors of docs/spec/api.md §Device authentication, §Errors.
var (
	ErrMalformed       = errors.New("deviceauth: malformed challenge or response")
	ErrBadChallenge    = errors.New("deviceauth: challenge not issued by this relay")
	ErrWrongRelay      = errors.New("deviceauth: challenge of another relay")
	ErrWrongPurpose    = errors.New("deviceauth: challenge for another purpose")
	ErrExpired         = errors.New("deviceauth: challenge expired")
	ErrUnknownDevice   = errors.New("deviceauth: no current key for this device")
	ErrBadSignature    = errors.New("deviceauth: signature does not verify")
	ErrReplayed        = errors.New("deviceauth: challenge already answered")
	ErrReplayCacheFull = errors.New("deviceauth: replay cache full")
	ErrForbidden       = errors.New("deviceauth: resource of another device")
)
