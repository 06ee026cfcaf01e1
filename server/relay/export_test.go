package relay

import "github.com/coder/websocket"

// PushConn exposes a push channel's connection to the tests.
func PushConn(p *Push) *websocket.Conn { return p.conn }
