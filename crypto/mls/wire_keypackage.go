package mls

import "golang.org/x/crypto/cryptobyte"

// KeyPackage is a client's signed offer to be added to groups (RFC 9420
// §10).
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     HPKEPublicKey
	LeafNode    LeafNode
	Extensions  Extensions
	// Signature is SignWithLabel(., "KeyPackageTBS", KeyPackageTBS) by
	// LeafNode.SignatureKey.
	Signature []byte
}

// KeyPackageRef identifies a KeyPackage: RefHash("MLS 1.0 KeyPackage
// Reference", encoded KeyPackage) (§5.2).
type KeyPackageRef []byte

func (kp *KeyPackage) marshalTBS(b *cryptobyte.Builder) {
	b.AddUint16(uint16(kp.Version))
	b.AddUint16(uint16(kp.CipherSuite))
	addOpaque(b, "init_key", kp.InitKey, MaxKeySize)
	kp.LeafNode.marshal(b)
	kp.Extensions.marshal(b, "extensions")
}

func (kp *KeyPackage) marshal(b *cryptobyte.Builder) {
	kp.marshalTBS(b)
	addOpaque(b, "signature", kp.Signature, MaxSignatureSize)
}

func (kp *KeyPackage) unmarshal(d *decoder) {
	kp.Version = ProtocolVersion(d.u16("version"))
	kp.CipherSuite = CipherSuite(d.u16("cipher_suite"))
	kp.InitKey = d.opaque("init_key", MaxKeySize)
	kp.LeafNode.unmarshal(d)
	kp.Extensions = readExtensions(d, "extensions")
	kp.Signature = d.opaque("signature", MaxSignatureSize)
}

// Encode returns the §10 encoding of kp.
func (kp *KeyPackage) Encode() ([]byte, error) { return encode("KeyPackage", kp.marshal) }

// TBS returns the encoded KeyPackageTBS that kp.Signature covers.
func (kp *KeyPackage) TBS() ([]byte, error) { return encode("KeyPackageTBS", kp.marshalTBS) }

// DecodeKeyPackage parses a KeyPackage (not wrapped in an MLSMessage).
// Version and CipherSuite are not checked here; ValidateKeyPackage does.
func DecodeKeyPackage(b []byte) (*KeyPackage, error) {
	kp := new(KeyPackage)
	if err := decode("KeyPackage", b, kp.unmarshal); err != nil {
		return nil, err
	}
	return kp, nil
}
