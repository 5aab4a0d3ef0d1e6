package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"
)

// Formats of record.
const (
	PredicateType   = "https://sourceos.dev/attestations/agent-machine-session/v1"
	StatementType   = "https://in-toto.io/Statement/v1"
	PayloadType     = "application/vnd.in-toto+json"
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

	BundleFile   = "attestation.sigstore.json"
	EnvelopeFile = "attestation.intoto.json"
	ArtifactsDir = "artifacts"
	// InclusionFile is the session log's proof that the bundle is in it, written beside the
	// signed files after the bundle (internal/evidencelog checks it; it carries its own
	// signed checkpoint).
	InclusionFile = "log-inclusion.json"
	PublicKeyHint = "sourceosctl-evidence"
)

// Artifact is a file stored in the bundle and referenced by digest from the statement.
type Artifact struct {
	Name string // file name inside artifacts/
	Data []byte
}

// Subject is an in-toto subject.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Statement is an in-toto Statement v1 holding only in-toto's own fields.
type Statement struct {
	Type          string     `json:"_type"`
	Subject       []Subject  `json:"subject"`
	PredicateType string     `json:"predicateType"`
	Predicate     *Predicate `json:"predicate"`
}

// Envelope is a DSSE envelope in its JSON form.
type Envelope struct {
	PayloadType string         `json:"payloadType"`
	Payload     string         `json:"payload"`
	Signatures  []EnvSignature `json:"signatures"`
}

type EnvSignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Write signs the statement for predicate and artifacts and writes the bundle directory
// dir/name. Every file is written and synced into a hidden directory that is synced and
// renamed into place last, so a bundle directory is either complete or absent.
func Write(dir, name string, pred *Predicate, artifacts []Artifact, key *Key) (string, error) {
	path, _, err := WriteBundle(dir, name, pred, artifacts, key)
	return path, err
}

// WriteBundle is Write that also returns the SHA-256 of the bundle file it wrote, so that
// what is logged afterwards can be checked to be what was written.
func WriteBundle(dir, name string, pred *Predicate, artifacts []Artifact, key *Key) (path string, bundleSHA256 []byte, err error) {
	final := filepath.Join(dir, name)
	tmp := filepath.Join(dir, ".tmp-"+name)
	if err := os.MkdirAll(filepath.Join(tmp, ArtifactsDir), 0o700); err != nil {
		return "", nil, fmt.Errorf("create evidence directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	stmt := &Statement{Type: StatementType, PredicateType: PredicateType, Predicate: pred}
	if pred.Git.Before.Commit != "" {
		stmt.Subject = append(stmt.Subject, Subject{Name: "git:" + pred.Repo.Path, Digest: map[string]string{"gitCommit": pred.Git.Before.Commit}})
	}
	sort.Slice(artifacts, func(i, j int) bool { return artifacts[i].Name < artifacts[j].Name })
	for _, a := range artifacts {
		if err := writeSynced(filepath.Join(tmp, ArtifactsDir, a.Name), a.Data); err != nil {
			return "", nil, err
		}
		sum := sha256.Sum256(a.Data)
		stmt.Subject = append(stmt.Subject, Subject{Name: ArtifactsDir + "/" + a.Name, Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}})
	}
	if err := ValidatePredicate(pred); err != nil {
		return "", nil, fmt.Errorf("evidence predicate does not match its schema: %w", err)
	}
	payload, err := json.Marshal(stmt)
	if err != nil {
		return "", nil, err
	}
	envJSON, err := sigdsse.WrapSigner(key.Signer, PayloadType).SignMessage(bytes.NewReader(payload))
	if err != nil {
		return "", nil, fmt.Errorf("sign the statement: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(envJSON, &env); err != nil {
		return "", nil, err
	}
	envOut, _ := json.MarshalIndent(env, "", "  ")
	bundleOut, err := sigstoreBundle(env)
	if err != nil {
		return "", nil, err
	}
	if err := writeSynced(filepath.Join(tmp, EnvelopeFile), append(envOut, '\n')); err != nil {
		return "", nil, err
	}
	if err := writeSynced(filepath.Join(tmp, BundleFile), bundleOut); err != nil {
		return "", nil, err
	}
	digest := sha256.Sum256(bundleOut)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", nil, err
	}
	syncDir(filepath.Join(tmp, ArtifactsDir))
	syncDir(tmp)
	if err := os.Rename(tmp, final); err != nil {
		return "", nil, fmt.Errorf("move the evidence bundle into place: %w", err)
	}
	syncDir(dir)
	return final, digest[:], nil
}

// writeSynced writes a new file (mode 0644) and syncs it to disk. It is only used inside the
// bundle's hidden directory, whose rename publishes every file at once.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// syncDir makes the directory's entries durable; best effort, as not every platform or file
// system can sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// sigstoreBundle wraps the envelope in a Sigstore bundle v0.3 whose verification material
// is a public-key hint: verifiers bring the key themselves.
func sigstoreBundle(env Envelope) ([]byte, error) {
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, err
	}
	var sigs []*protodsse.Signature
	for _, s := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, &protodsse.Signature{Sig: raw, Keyid: s.KeyID})
	}
	b := &protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: PublicKeyHint}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType, Signatures: sigs}},
	}
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(b)
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// BundleName names a session's bundle directory so that bundles sort by time and never
// collide: the session id is UTC time plus 48 random bits.
func BundleName(sessionID string) string { return sessionID }
