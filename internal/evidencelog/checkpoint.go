package evidencelog

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, its size and its
// root hash. Signed, it is a C2SP signed note (golang.org/x/mod/sumdb/note) whose signature
// line is named by the origin.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

// body is the checkpoint's text: three lines, each ending in a newline.
func (c Checkpoint) body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// parseBody reads a checkpoint's text; extension lines after the third are not used here
// and refused, as this log writes none.
func parseBody(text string) (Checkpoint, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Checkpoint{}, errors.New("a checkpoint has exactly three lines: origin, size, root hash")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("size %q is not a decimal number", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size {
		return Checkpoint{}, fmt.Errorf("root hash %q is not a base64 SHA-256 hash", lines[2])
	}
	if lines[0] == "" {
		return Checkpoint{}, errors.New("the origin line is empty")
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// keyHash is the signed note's key ID for an ECDSA key, as the signed-note specification
// and Rekor's checkpoints define it: the first four bytes of SHA-256 over the public key's
// DER SubjectPublicKeyInfo.
func keyHash(pub crypto.PublicKey) (uint32, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return 0, err
	}
	sum := sha256.Sum256(der)
	return binary.BigEndian.Uint32(sum[:4]), nil
}

// noteSigner signs a note with the evidence key (ECDSA P-256, SHA-256, ASN.1 signature).
type noteSigner struct {
	name string
	hash uint32
	s    signature.Signer
}

func (n noteSigner) Name() string    { return n.name }
func (n noteSigner) KeyHash() uint32 { return n.hash }
func (n noteSigner) Sign(msg []byte) ([]byte, error) {
	return n.s.SignMessage(bytes.NewReader(msg))
}

// noteVerifier checks a note's signature with the evidence public key.
type noteVerifier struct {
	name string
	hash uint32
	v    signature.Verifier
}

func (n noteVerifier) Name() string    { return n.name }
func (n noteVerifier) KeyHash() uint32 { return n.hash }
func (n noteVerifier) Verify(msg, sig []byte) bool {
	return n.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)) == nil
}

// signCheckpoint returns the signed note for c, signed by each of signers (two for a key
// rotation: the key rotated to and the key rotated from).
func signCheckpoint(c Checkpoint, signers ...signature.SignerVerifier) (string, error) {
	var ns []note.Signer
	for _, s := range signers {
		pub, err := s.PublicKey()
		if err != nil {
			return "", err
		}
		h, err := keyHash(pub)
		if err != nil {
			return "", err
		}
		ns = append(ns, noteSigner{name: c.Origin, hash: h, s: s})
	}
	out, err := note.Sign(&note.Note{Text: c.body()}, ns...)
	if err != nil {
		return "", fmt.Errorf("sign the log's checkpoint: %w", err)
	}
	return string(out), nil
}

// newNoteVerifier checks a signature line named origin with the evidence public key v.
func newNoteVerifier(origin string, v signature.Verifier) (note.Verifier, error) {
	pub, err := v.PublicKey()
	if err != nil {
		return nil, err
	}
	h, err := keyHash(pub)
	if err != nil {
		return nil, err
	}
	return noteVerifier{name: origin, hash: h, v: v}, nil
}

// describeNoteError says in the log's terms why a signed note did not open.
func describeNoteError(err error) error {
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return errors.New("it is not signed by this key")
	case errors.As(err, &invalid):
		return errors.New("its signature does not verify: the checkpoint was changed after it was signed")
	default:
		return fmt.Errorf("not a signed checkpoint: %w", err)
	}
}

// OpenCheckpoint checks a signed checkpoint with the evidence public key and returns its
// body. The signature must be by that key under the checkpoint's own origin.
func OpenCheckpoint(signed []byte, v signature.Verifier) (Checkpoint, error) {
	origin, _, _ := strings.Cut(string(signed), "\n")
	nv, err := newNoteVerifier(origin, v)
	if err != nil {
		return Checkpoint{}, err
	}
	n, err := note.Open(signed, note.VerifierList(nv))
	if err != nil {
		return Checkpoint{}, describeNoteError(err)
	}
	return parseBody(n.Text)
}
