package client

import (
	"errors"
	"net/http"
)

// ErrAnonymousHTTP is returned by Open and Enrol when Config.HTTP has a
// transport the SDK cannot derive a separate anonymous transport from (it
// is not an *http.Transport) and Config.AnonymousHTTP is not set, or when
// Config.AnonymousHTTP is Config.HTTP.
var ErrAnonymousHTTP = errors.New("client: anonymous requests need an HTTP transport of their own: set Config.AnonymousHTTP (docs/spec/api.md §Sealed sends)")

// anonymousHTTP is the HTTP client for the requests the relay must not
// link to this device: sealed sends and attachment downloads
// (docs/spec/api.md §Sealed sends). It shares no connection with
// Config.HTTP, which carries the device's authenticated requests, and
// opens a fresh connection for every request, so that anonymous requests
// are not linked to each other by a connection either. It copies neither
// the cookie jar nor anything else that could identify the device.
func anonymousHTTP(cfg *Config) (*http.Client, error) {
	if cfg.AnonymousHTTP != nil {
		if cfg.AnonymousHTTP == cfg.HTTP {
			return nil, ErrAnonymousHTTP
		}
		return cfg.AnonymousHTTP, nil
	}
	var base *http.Transport
	switch t := cfg.HTTP.Transport.(type) {
	case nil:
		dt, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			return nil, ErrAnonymousHTTP
		}
		base = dt
	case *http.Transport:
		base = t
	default:
		return nil, ErrAnonymousHTTP
	}
	tr := base.Clone() // a pool of its own
	tr.DisableKeepAlives = true
	if tr.TLSClientConfig != nil {
		// No TLS session resumption: a ticket links connections.
		tr.TLSClientConfig.ClientSessionCache = nil
	}
	return &http.Client{Transport: tr, Timeout: cfg.HTTP.Timeout, CheckRedirect: cfg.HTTP.CheckRedirect}, nil
}
