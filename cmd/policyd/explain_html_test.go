package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExplain_MatrixHTML(t *testing.T) {
	t.Parallel()
	out, err := run(t, "explain", "--manifests", "../../examples", "--matrix", "-o", "html")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "<!DOCTYPE html>"), "starts with a doctype")
	assert.Contains(t, out, `<details class="port" id="tcp-5432" data-port="TCP/5432"`)
	assert.Contains(t, out, `<script type="application/json" id="matrix-data">`)
	assert.Contains(t, out, `id="legend"`)

	_, err = run(t, "explain", "--manifests", "../../examples", "--matrix", "-o", "xml")
	require.Error(t, err)
	assert.Equal(t, 2, exitCodeOf(err))
	assert.Contains(t, err.Error(), "html")
}

func TestExplain_HelpMentionsHTML(t *testing.T) {
	t.Parallel()
	out, err := run(t, "explain", "--help")
	require.NoError(t, err)
	assert.Contains(t, out, "-o html")
	assert.Contains(t, out, "jsonl, json, yaml or html")
}
