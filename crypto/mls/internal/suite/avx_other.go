//go:build !amd64 || purego

package suite

// cleanVectorState has nothing to do off amd64 (see avx_amd64.go).
func cleanVectorState() {}
