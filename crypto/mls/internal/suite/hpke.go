package suite

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha512"

	circlhpke "github.com/cloudflare/circl/hpke"
)

// kemImpl is HPKE (RFC 9180) base mode for one suite's KEM, KDF and AEAD,
// over serialised keys.
type kemImpl interface {
	generate() (HPKEPrivateKey, HPKEPublicKey, error)
	derive(ikm []byte) (HPKEPrivateKey, HPKEPublicKey, error)
	publicOf(priv HPKEPrivateKey) (HPKEPublicKey, error)
	// setupS is SetupBaseS: it returns enc and a sending context.
	setupS(pub HPKEPublicKey, info []byte) (enc []byte, c senderCtx, err error)
	// setupR is SetupBaseR.
	setupR(priv HPKEPrivateKey, enc, info []byte) (receiverCtx, error)
	// setupSDerand is SetupBaseS with the encapsulation randomness taken
	// from seed (encapSeedSize bytes).
	setupSDerand(pub HPKEPublicKey, info, seed []byte) (enc []byte, c senderCtx, err error)
	encapSeedSize() int
}

type senderCtx interface {
	Seal(aad, plaintext []byte) ([]byte, error)
	Export(exporterContext string, length int) ([]byte, error)
}

type receiverCtx interface {
	Open(aad, ciphertext []byte) ([]byte, error)
	Export(exporterContext string, length int) ([]byte, error)
}

// maxExportLength bounds HPKE Export (RFC 9180 §5.3: L <= 255*Nh, and the
// standard library limits it to 65535).
const maxExportLength = 0xffff

// GenerateHPKEKey returns a fresh HPKE key pair.
func (s *Suite) GenerateHPKEKey() (HPKEPrivateKey, HPKEPublicKey, error) {
	return s.kem.generate()
}

// DeriveKeyPair is the KEM's DeriveKeyPair (RFC 9180 §7.1.3; for X-Wing,
// draft-connolly-cfrg-xwing-kem-06 "Use in HPKE": the 32-byte seed is
// SHAKE256(ikm, 32)).
func (s *Suite) DeriveKeyPair(ikm []byte) (HPKEPrivateKey, HPKEPublicKey, error) {
	return s.kem.derive(ikm)
}

// HPKEPublicKeyOf returns the public key for priv.
func (s *Suite) HPKEPublicKeyOf(priv HPKEPrivateKey) (HPKEPublicKey, error) {
	return s.kem.publicOf(priv)
}

// EncryptWithLabel is RFC 9420 §5.1.3 EncryptWithLabel: SealBase(pub,
// EncryptContext{"MLS 1.0 " + label, context}, "", plaintext).
func (s *Suite) EncryptWithLabel(pub HPKEPublicKey, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	info, err := labelledContent(label, context)
	if err != nil {
		return nil, nil, err
	}
	enc, c, err := s.kem.setupS(pub, info)
	if err != nil {
		return nil, nil, err
	}
	ct, err := c.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, err
	}
	return enc, ct, nil
}

// EncapSeedSize is the number of bytes EncryptWithLabelDerand needs.
func (s *Suite) EncapSeedSize() int { return s.kem.encapSeedSize() }

// EncryptWithLabelDerand is EncryptWithLabel with the KEM's encapsulation
// randomness taken from seed (EncapSeedSize bytes) instead of crypto/rand,
// for constructions that must be reproducible by a verifier. The same seed
// must never be used twice with different plaintexts; the output decrypts
// with DecryptWithLabel like any other.
func (s *Suite) EncryptWithLabelDerand(pub HPKEPublicKey, label string, context, plaintext, seed []byte) (kemOutput, ciphertext []byte, err error) {
	if len(seed) != s.kem.encapSeedSize() {
		return nil, nil, ErrLength
	}
	info, err := labelledContent(label, context)
	if err != nil {
		return nil, nil, err
	}
	enc, c, err := s.kem.setupSDerand(pub, info, seed)
	if err != nil {
		return nil, nil, err
	}
	ct, err := c.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, err
	}
	return enc, ct, nil
}

// DecryptWithLabel is RFC 9420 §5.1.3 DecryptWithLabel. Every failure is
// ErrDecrypt.
func (s *Suite) DecryptWithLabel(priv HPKEPrivateKey, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	return openLabelled(label, context, ciphertext, func(info []byte) (receiverCtx, error) {
		return s.kem.setupR(priv, kemOutput, info)
	})
}

// openLabelled is the rest of DecryptWithLabel once the receiver's key is
// known: the labelled info, setup (SetupBaseR) and Open. Every failure is
// ErrDecrypt.
func openLabelled(label string, context, ciphertext []byte, setup func(info []byte) (receiverCtx, error)) ([]byte, error) {
	info, err := labelledContent(label, context)
	if err != nil {
		return nil, ErrDecrypt
	}
	c, err := setup(info)
	if err != nil {
		return nil, ErrDecrypt
	}
	pt, err := c.Open(nil, ciphertext)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// DecryptionKey is an HPKE private key parsed (for X-Wing: the ML-KEM and
// X25519 keys expanded from the seed) once, ahead of DecryptWithLabelKey,
// so that the expansion can run while other work goes on.
type DecryptionKey struct {
	priv  HPKEPrivateKey
	sk    hpke.PrivateKey  // nil for a KEM without a parsed form
	ahead func(enc []byte) // nil for a KEM that cannot decapsulate ahead
	wipe  func()           // nil for a KEM that keeps no secret of its own
}

// expander is a KEM whose private keys can be parsed ahead of SetupBaseR.
type expander interface {
	privateKey(priv HPKEPrivateKey) (hpke.PrivateKey, error)
	setupRKey(sk hpke.PrivateKey, enc, info []byte) (receiverCtx, error)
}

// aheadExpander is a KEM whose parsed keys can also decapsulate a given
// enc ahead of SetupBaseR (expandKey's second result), so that SetupBaseR
// with that enc skips the KEM's expensive part.
type aheadExpander interface {
	expandKey(priv HPKEPrivateKey) (sk hpke.PrivateKey, ahead func(enc []byte), wipe func(), err error)
}

// PrepareDecryption is PrepareDecryptionKey followed by Ahead(kemOutput).
func (s *Suite) PrepareDecryption(priv HPKEPrivateKey, kemOutput []byte) (*DecryptionKey, error) {
	k, err := s.PrepareDecryptionKey(priv)
	if err != nil {
		return nil, err
	}
	k.Ahead(kemOutput)
	return k, nil
}

// PrepareDecryptionKey parses priv for DecryptWithLabelKey. A key that
// does not parse is refused here with ErrInvalidKey.
func (s *Suite) PrepareDecryptionKey(priv HPKEPrivateKey) (*DecryptionKey, error) {
	if e, ok := s.kem.(aheadExpander); ok {
		sk, ahead, wipe, err := e.expandKey(priv)
		if err != nil {
			return nil, ErrInvalidKey
		}
		return &DecryptionKey{priv: priv, sk: sk, ahead: ahead, wipe: wipe}, nil
	}
	e, ok := s.kem.(expander)
	if !ok {
		return &DecryptionKey{priv: priv}, nil
	}
	sk, err := e.privateKey(priv)
	if err != nil {
		return nil, ErrInvalidKey
	}
	return &DecryptionKey{priv: priv, sk: sk}, nil
}

// Ahead does the KEM decapsulation of kemOutput now, where the KEM allows
// (X-Wing), so that the DecryptWithLabelKey of that kemOutput, whose info
// may not be known yet, does only the rest of the HPKE open. The key
// decrypts other kemOutputs too, at the full cost; a kemOutput that does
// not decapsulate fails only in DecryptWithLabelKey, with ErrDecrypt. Not
// safe for concurrent use with other calls on the key.
func (k *DecryptionKey) Ahead(kemOutput []byte) {
	if k.ahead != nil {
		k.ahead(kemOutput)
	}
}

// Wipe zeroes the secrets the key holds in Moat's own memory: results of
// Ahead and, for X-Wing, the expanded X25519 private key (the ML-KEM
// half lives in circl). The key must not be used afterwards. It accepts
// nil.
func (k *DecryptionKey) Wipe() {
	if k != nil && k.wipe != nil {
		k.wipe()
	}
}

// DecryptWithLabelKey is DecryptWithLabel with a key from
// PrepareDecryptionKey. Every failure is ErrDecrypt.
func (s *Suite) DecryptWithLabelKey(key *DecryptionKey, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	if key == nil {
		return nil, ErrDecrypt
	}
	if key.sk == nil {
		return s.DecryptWithLabel(key.priv, label, context, kemOutput, ciphertext)
	}
	return openLabelled(label, context, ciphertext, func(info []byte) (receiverCtx, error) {
		return s.kem.(expander).setupRKey(key.sk, kemOutput, info)
	})
}

// ExportSend is SetupBaseS(pub, info) followed by Export(exporterContext,
// length): the joiner's side of an external init (RFC 9420 §8.3), where
// info is "" and exporterContext "MLS 1.0 external init secret".
func (s *Suite) ExportSend(pub HPKEPublicKey, info []byte, exporterContext string, length int) (kemOutput, secret []byte, err error) {
	if length < 0 || length > maxExportLength {
		return nil, nil, ErrLength
	}
	enc, c, err := s.kem.setupS(pub, info)
	if err != nil {
		return nil, nil, err
	}
	secret, err = c.Export(exporterContext, length)
	if err != nil {
		return nil, nil, err
	}
	return enc, secret, nil
}

// ExportReceive is SetupBaseR(kemOutput, priv, info) followed by
// Export(exporterContext, length) (RFC 9420 §8.3). Every failure to
// decapsulate is ErrDecrypt.
func (s *Suite) ExportReceive(priv HPKEPrivateKey, kemOutput, info []byte, exporterContext string, length int) ([]byte, error) {
	if length < 0 || length > maxExportLength {
		return nil, ErrLength
	}
	c, err := s.kem.setupR(priv, kemOutput, info)
	if err != nil {
		return nil, ErrDecrypt
	}
	return c.Export(exporterContext, length)
}

// --- standard library backend: DHKEM(P-256, P-384, P-521, X25519). X-Wing
// is in xwing.go.

type stdKEM struct {
	kem  hpke.KEM
	kdf  hpke.KDF
	aead hpke.AEAD
	// circl is the same KEM in circl, used only for derandomised
	// encapsulation, which the standard library does not expose.
	circl circlhpke.Suite
}

func stdDHKEMX25519(a aeadKind) *stdKEM {
	return &stdKEM{kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: stdAEAD(a),
		circl: circlhpke.NewSuite(circlhpke.KEM_X25519_HKDF_SHA256, circlhpke.KDF_HKDF_SHA256, circlAEAD(a))}
}

func stdDHKEMP256(a aeadKind) *stdKEM {
	return &stdKEM{kem: hpke.DHKEM(ecdh.P256()), kdf: hpke.HKDFSHA256(), aead: stdAEAD(a),
		circl: circlhpke.NewSuite(circlhpke.KEM_P256_HKDF_SHA256, circlhpke.KDF_HKDF_SHA256, circlAEAD(a))}
}

func stdDHKEMP384(a aeadKind) *stdKEM {
	return &stdKEM{kem: hpke.DHKEM(ecdh.P384()), kdf: hpke.HKDFSHA384(), aead: stdAEAD(a),
		circl: circlhpke.NewSuite(circlhpke.KEM_P384_HKDF_SHA384, circlhpke.KDF_HKDF_SHA384, circlAEAD(a))}
}

func stdDHKEMP521(a aeadKind) *stdKEM {
	return &stdKEM{kem: hpke.DHKEM(ecdh.P521()), kdf: hpke.HKDFSHA512(), aead: stdAEAD(a),
		circl: circlhpke.NewSuite(circlhpke.KEM_P521_HKDF_SHA512, circlhpke.KDF_HKDF_SHA512, circlAEAD(a))}
}

func stdAEAD(a aeadKind) hpke.AEAD {
	switch a {
	case aesGCM128:
		return hpke.AES128GCM()
	case aesGCM256:
		return hpke.AES256GCM()
	case chacha20Poly1305:
		return hpke.ChaCha20Poly1305()
	}
	panic("mls/suite: unknown AEAD")
}

func circlAEAD(a aeadKind) circlhpke.AEAD {
	switch a {
	case aesGCM128:
		return circlhpke.AEAD_AES128GCM
	case aesGCM256:
		return circlhpke.AEAD_AES256GCM
	case chacha20Poly1305:
		return circlhpke.AEAD_ChaCha20Poly1305
	}
	panic("mls/suite: unknown AEAD")
}

func (k *stdKEM) serialise(sk hpke.PrivateKey) (HPKEPrivateKey, HPKEPublicKey, error) {
	priv, err := sk.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return priv, sk.PublicKey().Bytes(), nil
}

func (k *stdKEM) generate() (HPKEPrivateKey, HPKEPublicKey, error) {
	sk, err := k.kem.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	return k.serialise(sk)
}

func (k *stdKEM) derive(ikm []byte) (HPKEPrivateKey, HPKEPublicKey, error) {
	sk, err := k.kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, err
	}
	return k.serialise(sk)
}

func (k *stdKEM) privateKey(priv HPKEPrivateKey) (hpke.PrivateKey, error) {
	sk, err := k.kem.NewPrivateKey(priv)
	if err != nil {
		return nil, ErrInvalidKey
	}
	return sk, nil
}

func (k *stdKEM) publicOf(priv HPKEPrivateKey) (HPKEPublicKey, error) {
	sk, err := k.privateKey(priv)
	if err != nil {
		return nil, err
	}
	return sk.PublicKey().Bytes(), nil
}

func (k *stdKEM) setupS(pub HPKEPublicKey, info []byte) ([]byte, senderCtx, error) {
	pk, err := k.kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	enc, c, err := hpke.NewSender(pk, k.kdf, k.aead, info)
	if err != nil {
		return nil, nil, err
	}
	return enc, c, nil
}

func (k *stdKEM) setupR(priv HPKEPrivateKey, enc, info []byte) (receiverCtx, error) {
	sk, err := k.privateKey(priv)
	if err != nil {
		return nil, err
	}
	return k.setupRKey(sk, enc, info)
}

func (k *stdKEM) setupRKey(sk hpke.PrivateKey, enc, info []byte) (receiverCtx, error) {
	r, err := hpke.NewRecipient(enc, sk, k.kdf, k.aead, info)
	if err != nil {
		return nil, ErrDecrypt
	}
	return r, nil
}

func (k *stdKEM) encapSeedSize() int {
	kemID, _, _ := k.circl.Params()
	return kemID.Scheme().EncapsulationSeedSize()
}

func (k *stdKEM) setupSDerand(pub HPKEPublicKey, info, seed []byte) ([]byte, senderCtx, error) {
	return circlSetupSDerand(k.circl, pub, info, seed)
}

// --- circl backend: DHKEM(X448, HKDF-SHA512), which the standard library
// lacks.

type circlKEM struct {
	suite circlhpke.Suite
	kemID circlhpke.KEM
}

func circlX448(a aeadKind) *circlKEM {
	return &circlKEM{
		suite: circlhpke.NewSuite(circlhpke.KEM_X448_HKDF_SHA512, circlhpke.KDF_HKDF_SHA512, circlAEAD(a)),
		kemID: circlhpke.KEM_X448_HKDF_SHA512,
	}
}

func (k *circlKEM) generate() (HPKEPrivateKey, HPKEPublicKey, error) {
	pk, sk, err := k.kemID.Scheme().GenerateKeyPair()
	if err != nil {
		return nil, nil, err
	}
	return marshalPair(pk, sk)
}

type binaryMarshaler interface{ MarshalBinary() ([]byte, error) }

func marshalPair(pk, sk binaryMarshaler) (HPKEPrivateKey, HPKEPublicKey, error) {
	priv, err := sk.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	pub, err := pk.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	return priv, pub, nil
}

// x448Nsk is Nsk for DHKEM(X448, HKDF-SHA512).
const x448Nsk = 56

// derive is RFC 9180 §7.1.3 DeriveKeyPair for X25519/X448-style KEMs:
//
//	dkp_prk = LabeledExtract("", "dkp_prk", ikm)
//	sk = LabeledExpand(dkp_prk, "sk", "", Nsk)
//
// circl's DeriveKeyPair accepts only ikm of exactly Nsk bytes, while MLS
// passes KDF.Nh-byte secrets, so the two labelled KDF calls are made here.
func (k *circlKEM) derive(ikm []byte) (HPKEPrivateKey, HPKEPublicKey, error) {
	suiteID := []byte{'K', 'E', 'M', byte(k.kemID >> 8), byte(k.kemID)}
	labeledIKM := append(append(append([]byte("HPKE-v1"), suiteID...), "dkp_prk"...), ikm...)
	prk, err := hkdf.Extract(sha512.New, labeledIKM, nil)
	if err != nil {
		return nil, nil, err
	}
	info := append(append(append([]byte{0, x448Nsk}, "HPKE-v1"...), suiteID...), "sk"...)
	skBytes, err := hkdf.Expand(sha512.New, prk, string(info), x448Nsk)
	if err != nil {
		return nil, nil, err
	}
	sk, err := k.kemID.Scheme().UnmarshalBinaryPrivateKey(skBytes)
	if err != nil {
		return nil, nil, err
	}
	return marshalPair(sk.Public(), sk)
}

func (k *circlKEM) publicOf(priv HPKEPrivateKey) (HPKEPublicKey, error) {
	sk, err := k.kemID.Scheme().UnmarshalBinaryPrivateKey(priv)
	if err != nil {
		return nil, ErrInvalidKey
	}
	pub, err := sk.Public().MarshalBinary()
	if err != nil {
		return nil, err
	}
	return pub, nil
}

func (k *circlKEM) setupS(pub HPKEPublicKey, info []byte) ([]byte, senderCtx, error) {
	return circlSetupS(k.suite, pub, info, rand.Reader)
}

func (k *circlKEM) setupSDerand(pub HPKEPublicKey, info, seed []byte) ([]byte, senderCtx, error) {
	return circlSetupSDerand(k.suite, pub, info, seed)
}

func (k *circlKEM) encapSeedSize() int { return k.kemID.Scheme().EncapsulationSeedSize() }

func (k *circlKEM) setupR(priv HPKEPrivateKey, enc, info []byte) (receiverCtx, error) {
	sk, err := k.kemID.Scheme().UnmarshalBinaryPrivateKey(priv)
	if err != nil {
		return nil, ErrInvalidKey
	}
	r, err := k.suite.NewReceiver(sk, info)
	if err != nil {
		return nil, ErrDecrypt
	}
	o, err := r.Setup(enc)
	if err != nil {
		return nil, ErrDecrypt
	}
	return circlOpener{o}, nil
}

func circlSetupSDerand(s circlhpke.Suite, pub HPKEPublicKey, info, seed []byte) ([]byte, senderCtx, error) {
	kemID, _, _ := s.Params()
	if len(seed) != kemID.Scheme().EncapsulationSeedSize() {
		return nil, nil, ErrLength
	}
	return circlSetupS(s, pub, info, bytes.NewReader(seed))
}

func circlSetupS(s circlhpke.Suite, pub HPKEPublicKey, info []byte, rnd interface{ Read([]byte) (int, error) }) ([]byte, senderCtx, error) {
	kemID, _, _ := s.Params()
	pk, err := kemID.Scheme().UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	snd, err := s.NewSender(pk, info)
	if err != nil {
		return nil, nil, err
	}
	enc, sealer, err := snd.Setup(rnd)
	if err != nil {
		return nil, nil, err
	}
	return enc, circlSealer{sealer}, nil
}

// circlSealer and circlOpener adapt circl's contexts to the standard
// library's method shapes (aad first; Export bounded instead of panicking).
type circlSealer struct{ s circlhpke.Sealer }

func (c circlSealer) Seal(aad, pt []byte) ([]byte, error) { return c.s.Seal(pt, aad) }
func (c circlSealer) Export(ctx string, length int) ([]byte, error) {
	return circlExport(c.s, ctx, length)
}

type circlOpener struct{ o circlhpke.Opener }

func (c circlOpener) Open(aad, ct []byte) ([]byte, error) { return c.o.Open(ct, aad) }
func (c circlOpener) Export(ctx string, length int) ([]byte, error) {
	return circlExport(c.o, ctx, length)
}

func circlExport(c circlhpke.Context, ctx string, length int) ([]byte, error) {
	_, kdf, _ := c.Suite().Params()
	if length < 0 || length > 255*kdf.ExtractSize() {
		return nil, ErrLength
	}
	return c.Export([]byte(ctx), uint(length)), nil
}
