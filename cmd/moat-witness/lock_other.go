//go:build !unix

package main

// lockDir is a no-op where flock(2) is unavailable: run one serve process
// per witness directory.
func lockDir(string) (func(), error) { return func() {}, nil }
