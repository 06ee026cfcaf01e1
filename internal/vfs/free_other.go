//go:build !(linux || darwin)

package vfs

import "math"

// Free reports unlimited space where statfs is not wired up: stores then
// rely on write errors alone.
func Free(path string) (uint64, error) { return math.MaxUint64, nil }
