// Package layering holds no code: its test pins which of skiff's
// packages may import which (layerfs → delta/format → delta → transport →
// agent → cmd), so that a header reader never pulls in the codecs and
// the device code never the server.
package layering
