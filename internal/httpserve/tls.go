package httpserve

import "crypto/tls"

// TLSConfig returns the TLS configuration of Moat's listeners: TLS 1.3
// only.
func TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13}
}
