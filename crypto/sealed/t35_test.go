package sealed

import (
	"bytes"
	"crypto/rand"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestT35NoCompression: no length side channel from compression
// (docs/spec/envelope.md §Size buckets). Contents of equal length give
// envelopes of equal length whatever their bytes, however compressible
// (all zeros, one repeated byte, English text, random bytes), and the
// envelope's length is exactly the bucket of the content's length.
func TestT35NoCompression(t *testing.T) {
	a, b := newDevice(t, 1), newDevice(t, 2)
	r := b.recipient(t)
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog, ", 200))
	for _, n := range []int{1, 64, 700, 718, 719, 2000, 2766, 2767, 6000} {
		random := make([]byte, n)
		_, _ = rand.Read(random)
		contents := map[string][]byte{
			"zeros":  make([]byte, n),
			"0x41s":  bytes.Repeat([]byte{0x41}, n),
			"text":   text[:n],
			"random": random,
		}
		want, err := BucketFor(n)
		must(t, err)
		for name, c := range contents {
			env, err := r.Seal(message(a, c))
			must(t, err)
			if len(env) != want {
				t.Errorf("%d bytes of %s: envelope of %d bytes, want %d", n, name, len(env), want)
			}
		}
	}
}

// TestT35NoCompressionImports: no package that takes part in building an
// envelope — the envelope, the ratchet, PQXDH, the keys, and the message
// content encoding (client/internal/content) — imports a compression
// library, directly or indirectly.
func TestT35NoCompressionImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".", "../ratchet", "../pqxdh", "../keys", "../../client/internal/content").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 || !slices.Contains(deps, "crypto/hpke") || !slices.Contains(deps, "github.com/moat-im/moat/crypto/ratchet") ||
		!slices.Contains(deps, "github.com/moat-im/moat/client/internal/content") {
		t.Fatalf("go list returned an implausible dependency list: %v", deps)
	}
	for _, d := range deps {
		l := strings.ToLower(d)
		for _, bad := range []string{"compress", "snappy", "zstd", "brotli", "lz4", "flate", "zlib", "gzip", "deflate"} {
			if strings.Contains(l, bad) {
				t.Errorf("%s is a dependency of the envelope", d)
			}
		}
	}
}
