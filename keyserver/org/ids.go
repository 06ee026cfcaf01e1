package org

import (
	"encoding/hex"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// Identifiers are 16 opaque bytes (docs/spec/org.md §Identifiers). The zero
// value is reserved: it means "none" where a field is optional and is
// refused everywhere else.
type (
	// TenantID names an organisation.
	TenantID [16]byte
	// UserID is an opaque user identifier chosen by the organisation. It
	// carries no name: display names live in the org chart.
	UserID [16]byte
	// DeviceID names one device of a user. The CA assigns it at enrolment.
	DeviceID [16]byte
	// DepartmentID names a department of the org chart.
	DepartmentID [16]byte
	// AdminID names an admin of the tenant's roster.
	AdminID [16]byte
	// CodeID names an enrolment code. It is not secret.
	CodeID [16]byte
)

const idSize = 16

func (id TenantID) String() string     { return hex.EncodeToString(id[:]) }
func (id UserID) String() string       { return hex.EncodeToString(id[:]) }
func (id DeviceID) String() string     { return hex.EncodeToString(id[:]) }
func (id DepartmentID) String() string { return hex.EncodeToString(id[:]) }
func (id AdminID) String() string      { return hex.EncodeToString(id[:]) }
func (id CodeID) String() string       { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the reserved zero identifier.
func (id TenantID) IsZero() bool { return id == TenantID{} }

// IsZero reports whether id is the reserved zero identifier.
func (id UserID) IsZero() bool { return id == UserID{} }

// IsZero reports whether id is the reserved zero identifier.
func (id DeviceID) IsZero() bool { return id == DeviceID{} }

// IsZero reports whether id is the reserved zero identifier ("no
// department").
func (id DepartmentID) IsZero() bool { return id == DepartmentID{} }

// IsZero reports whether id is the reserved zero identifier.
func (id AdminID) IsZero() bool { return id == AdminID{} }

// Text limits (docs/spec/org.md §Text).
const maxTextLen = 255

// validText reports whether s is 1 to 255 bytes of valid UTF-8 without
// control characters (C0, DEL, C1).
func validText(s string) bool {
	if len(s) == 0 || len(s) > maxTextLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// validKeyName reports whether s is a valid C2SP signed-note key name: text
// with no Unicode space and no '+'.
func validKeyName(s string) bool {
	if !validText(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || r == '+' {
			return false
		}
	}
	return true
}

// Times are whole seconds since the Unix epoch, UTC, in [0, 2^63−1]
// (docs/spec/org.md §Times).
const maxUnix = 1<<63 - 1

// seconds truncates t to whole seconds, in UTC, as it will be encoded.
func seconds(t time.Time) time.Time { return time.Unix(t.Unix(), 0).UTC() }

func validTime(t time.Time) bool { return t.Unix() >= 0 }

// sortByteArrays sorts fixed-size byte arrays in increasing byte order.
func sortByteArrays[K ~[16]byte | ~[32]byte](s []K) {
	slices.SortFunc(s, func(a, b K) int {
		// Arrays of either size compare as byte strings.
		return compareArrays(a, b)
	})
}

func compareArrays[K ~[16]byte | ~[32]byte](a, b K) int {
	for i := range len(a) {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
