package content

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func samples() []*Content {
	t0 := time.UnixMilli(1763800000123).UTC()
	id := func(b byte) ID { return ID{b, 1} }
	tok := bytes.Repeat([]byte{7}, TokenSize)
	return []*Content{
		{Kind: Text, MessageID: id(1), SentAt: t0, Text: "hello @bob", Mentions: []ID{id(2), id(3)}, Token: tok},
		{Kind: Reply, MessageID: id(2), SentAt: t0, Target: id(1), Text: "hi", ExpireAfter: 60},
		{Kind: Edit, MessageID: id(3), SentAt: t0, Target: id(1), Text: "hello, @bob", Conversation: id(9)},
		{Kind: Delete, MessageID: id(4), SentAt: t0, Target: id(1)},
		{Kind: Reaction, MessageID: id(5), SentAt: t0, Target: id(1), Reaction: "👍"},
		{Kind: Reaction, MessageID: id(6), SentAt: t0, Target: id(1)},
		{Kind: Delivered, MessageID: id(7), SentAt: t0, Targets: []ID{id(1), id(2)}},
		{Kind: Read, MessageID: id(8), SentAt: t0, Targets: []ID{id(1)}},
		{Kind: Attachment, MessageID: id(9), SentAt: t0, File: &File{Name: "a.pdf", MediaType: "application/pdf", Size: 1 << 30, Ref: []byte("ref")}, Text: "the report"},
		{Kind: Timer, MessageID: id(10), SentAt: t0, Timer: 3600},
		{Kind: Timer, MessageID: id(11), SentAt: t0},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range samples() {
		b, err := c.Marshal()
		if err != nil {
			t.Fatalf("%v: %v", c.Kind, err)
		}
		p, err := Parse(b)
		if err != nil {
			t.Fatalf("%v: parse: %v", c.Kind, err)
		}
		b2, err := p.Marshal()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("%v: re-encoding differs", c.Kind)
		}
	}
}

// TestMalformed checks that every rule of §Kinds is enforced on both sides.
func TestMalformed(t *testing.T) {
	t0 := time.UnixMilli(1).UTC()
	id := ID{1}
	bad := map[string]*Content{
		"zero id":            {Kind: Text, SentAt: t0, Text: "x"},
		"empty text":         {Kind: Text, MessageID: id, SentAt: t0},
		"text with target":   {Kind: Text, MessageID: id, SentAt: t0, Text: "x", Target: id},
		"reply no target":    {Kind: Reply, MessageID: id, SentAt: t0, Text: "x"},
		"delete with text":   {Kind: Delete, MessageID: id, SentAt: t0, Target: id, Text: "x"},
		"unsorted mentions":  {Kind: Text, MessageID: id, SentAt: t0, Text: "x", Mentions: []ID{{2}, {1}}},
		"repeated targets":   {Kind: Read, MessageID: id, SentAt: t0, Targets: []ID{{1}, {1}}},
		"no targets":         {Kind: Delivered, MessageID: id, SentAt: t0},
		"bad utf8":           {Kind: Text, MessageID: id, SentAt: t0, Text: "\xff"},
		"short token":        {Kind: Text, MessageID: id, SentAt: t0, Text: "x", Token: []byte{1}},
		"timer too long":     {Kind: Timer, MessageID: id, SentAt: t0, Timer: MaxTimer + 1},
		"attachment no file": {Kind: Attachment, MessageID: id, SentAt: t0},
		"unknown kind":       {Kind: 42, MessageID: id, SentAt: t0},
		"long reaction":      {Kind: Reaction, MessageID: id, SentAt: t0, Target: id, Reaction: string(bytes.Repeat([]byte("a"), MaxReaction+1))},
	}
	for name, c := range bad {
		if _, err := c.Marshal(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Marshal: %v", name, err)
		}
	}
	good, _ := samples()[0].Marshal()
	for name, b := range map[string][]byte{
		"trailing":  append(bytes.Clone(good), 0),
		"truncated": good[:len(good)-1],
		"version":   append([]byte{2}, good[1:]...),
		"empty":     nil,
	} {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse: %v", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range samples() {
		b, _ := c.Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("parsed content does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip differs")
		}
	})
}
