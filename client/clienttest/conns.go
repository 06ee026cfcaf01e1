package clienttest

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/moat-im/moat/server/relay"
)

// Request is one HTTP request the server received, with the TCP
// connection it came on.
type Request struct {
	// Conn numbers the server's connections in the order it accepted
	// them, from 1.
	Conn   uint64
	Method string
	Path   string
	// Session: the request carries an `Authorization: Moat-Session`
	// header (an authenticated relay request); Authorization: it carries
	// any Authorization header (the relay's or the directory's).
	Session, Authorization bool
	// SendAuthorization: the request carries a Moat-Send-Authorization
	// header (a sealed send).
	SendAuthorization bool
}

type connKey struct{}

// connLog numbers connections and records the requests on each.
type connLog struct {
	mu   sync.Mutex
	next uint64
	reqs []Request
}

func (l *connLog) connContext(ctx context.Context, _ net.Conn) context.Context {
	l.mu.Lock()
	l.next++
	n := l.next
	l.mu.Unlock()
	return context.WithValue(ctx, connKey{}, n)
}

func (l *connLog) record(r *http.Request) {
	n, _ := r.Context().Value(connKey{}).(uint64)
	auth := r.Header.Get("Authorization")
	req := Request{Conn: n, Method: r.Method, Path: r.URL.Path,
		Session:           strings.HasPrefix(auth, relay.AuthScheme+" "),
		Authorization:     auth != "",
		SendAuthorization: r.Header.Get(relay.HeaderSendAuthorization) != ""}
	l.mu.Lock()
	l.reqs = append(l.reqs, req)
	l.mu.Unlock()
}

// Requests returns every request the server received so far, in order.
func (s *Server) Requests() []Request {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	return append([]Request(nil), s.conns.reqs...)
}
