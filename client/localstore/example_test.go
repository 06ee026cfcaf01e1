package localstore_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/moat-im/moat/client/localstore"
)

// A store protected by a key file: put two messages of a conversation,
// erase one (delete-for-everyone), then the whole conversation.
func Example() {
	tmp, err := os.MkdirTemp("", "localstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	keyFile := filepath.Join(tmp, "store.key")
	if err := localstore.CreateKeyFile(keyFile); err != nil {
		log.Fatal(err)
	}
	s, err := localstore.Open(filepath.Join(tmp, "store"), localstore.Options{KeyFile: keyFile})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	conv := localstore.Scope("conversation-1")
	err = s.Update(func(tx localstore.Tx) error {
		if err := tx.Put(conv, "msg", []byte("m1"), []byte("hello")); err != nil {
			return err
		}
		return tx.Put(conv, "msg", []byte("m2"), []byte("oops"))
	})
	if err != nil {
		log.Fatal(err)
	}
	// Delete-for-everyone: m2's key is destroyed before Update returns.
	if err := s.Update(func(tx localstore.Tx) error { return tx.Delete(conv, "msg", []byte("m2")) }); err != nil {
		log.Fatal(err)
	}
	s.View(func(tx localstore.Tx) error {
		return tx.List(conv, "msg", func(id, value []byte) error {
			fmt.Printf("%s: %s\n", id, value)
			return nil
		})
	})
	// Leaving the conversation destroys every key of it.
	if err := s.Update(func(tx localstore.Tx) error { return tx.DeleteScope(conv) }); err != nil {
		log.Fatal(err)
	}
	err = s.View(func(tx localstore.Tx) error {
		_, err := tx.Get(conv, "msg", []byte("m1"))
		return err
	})
	fmt.Println(err == localstore.ErrNotFound)
	// Output:
	// m1: hello
	// true
}
