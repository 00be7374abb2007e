package deploy

import _ "embed"

// UninstallName is the file Uninstall holds.
const UninstallName = "uninstall/uninstall.yaml"

// Uninstall is deploy/uninstall/uninstall.yaml as shipped: a namespace and a
// DaemonSet that runs `policyd cleanup` on every node, removing the table the
// agents leave behind when they are deleted.
//
//go:embed uninstall/uninstall.yaml
var Uninstall []byte

// UninstallDocuments decodes Uninstall strictly, as Documents does Manifest.
func UninstallDocuments() ([]Document, error) { return decode(UninstallName, Uninstall) }
