//go:build !amd64 || purego

package vecstate

// Clean has nothing to do off amd64.
func Clean() {}

// Dirty cannot tell off amd64.
func Dirty() (dirty, known bool) { return false, false }
