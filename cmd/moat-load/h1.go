package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// The generator's own HTTP/1.1 client for sends: keep-alive TLS
// connections, each request written in one call, the answer parsed for
// its status and Content-Length only. net/http's client costs the
// generator several times the CPU per request, and the generator shares
// the relay's cores. The relay side is the standard net/http server.

// h1conn is one keep-alive connection.
type h1conn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
	// done is set once the server said it closes the connection.
	done bool
}

// h1pool holds idle connections to one address.
type h1pool struct {
	addr string
	cfg  *tls.Config
	idle chan *h1conn
}

func newH1Pool(addr string, cfg *tls.Config, size int) *h1pool {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	return &h1pool{addr: addr, cfg: cfg, idle: make(chan *h1conn, size)}
}

// get takes an idle connection, waiting for one: the pool is filled
// before a phase (fill) so that no TLS handshake happens while sends are
// timed, and an open-loop phase queues for the connections like the
// requests of that many clients.
func (p *h1pool) get(ctx context.Context) (*h1conn, error) {
	select {
	case c := <-p.idle:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fill dials connections until the pool holds n.
func (p *h1pool) fill(ctx context.Context, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for range n - len(p.idle) {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialHealthy(ctx, &tls.Dialer{Config: p.cfg}, p.addr)
			if err != nil {
				errs <- err
				return
			}
			p.put(&h1conn{c: c, r: bufio.NewReaderSize(c, 4096)})
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (p *h1pool) put(c *h1conn) {
	if c.done {
		c.c.Close()
		return
	}
	select {
	case p.idle <- c:
	default:
		c.c.Close()
	}
}

func (p *h1pool) close() {
	for {
		select {
		case c := <-p.idle:
			c.c.Close()
		default:
			return
		}
	}
}

// post sends a POST and returns the answer's status and body; on an
// error the connection is closed and must not be put back.
func (c *h1conn) post(path, auth string, body []byte) (int, []byte, error) {
	b := c.buf[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "+relayName+"\r\nContent-Type: application/octet-stream\r\n"...)
	if auth != "" {
		b = append(b, "Moat-Send-Authorization: "...)
		b = append(b, auth...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	c.c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.c.Write(b); err != nil {
		c.c.Close()
		return 0, nil, err
	}
	status, out, err := c.readResponse()
	if err != nil {
		c.c.Close()
	}
	return status, out, err
}

var errResponse = errors.New("malformed HTTP response")

func (c *h1conn) readResponse() (int, []byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, errResponse
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, errResponse
	}
	n := -1
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, errResponse
		}
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if n, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil || n < 0 || n > 1<<20 {
				return 0, nil, errResponse
			}
		case bytes.EqualFold(k, []byte("Connection")):
			c.done = bytes.EqualFold(bytes.TrimSpace(v), []byte("close"))
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return 0, nil, fmt.Errorf("%w: transfer-encoding %s", errResponse, v)
		}
	}
	if n < 0 {
		return 0, nil, fmt.Errorf("%w: no Content-Length", errResponse)
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(c.r, out); err != nil {
		return 0, nil, err
	}
	return status, out, nil
}
