// Package deploy holds policyd's Kubernetes manifests (policyd.yaml: the
// namespace, the agent's ServiceAccount, the metrics token's ServiceAccount
// and Secret, ClusterRole, binding and DaemonSet), embedded so tests and
// tools read exactly the file that ships, and decodes them.
package deploy

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// ManifestName is the file Manifest holds.
const ManifestName = "policyd.yaml"

// Manifest is deploy/policyd.yaml as shipped.
//
//go:embed policyd.yaml
var Manifest []byte

// Document is one object of the manifest: its JSON as written (what an API
// server would be sent) and its typed form.
type Document struct {
	JSON   []byte
	Object runtime.Object
}

// strictDecoder rejects unknown and duplicate fields, so a misspelt field is
// an error instead of being dropped silently.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// Documents splits the manifest into its objects and decodes each strictly.
// Documents that hold only comments are skipped.
func Documents() ([]Document, error) { return decode(ManifestName, Manifest) }

// decode splits manifest (named name in errors) into its objects and decodes
// each strictly.
func decode(name string, manifest []byte) ([]Document, error) {
	var docs []Document
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for i := 0; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		obj, _, err := strictDecoder.Decode(js, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		docs = append(docs, Document{JSON: js, Object: obj})
	}
}

// stripComments drops whole-line YAML comments, to recognise empty documents.
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
