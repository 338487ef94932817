package main

import "github.com/skiff-dev/skiff/layerfs"

// refOptions turns the global flags into layerfs options.
func (g *globalOptions) refOptions() []layerfs.Option {
	opts := []layerfs.Option{layerfs.WithInsecure(g.insecure)}
	if g.platform != "" {
		opts = append(opts, layerfs.WithPlatform(g.platform))
	}
	if g.tmpDir != "" {
		opts = append(opts, layerfs.WithTempDir(g.tmpDir))
	}
	return opts
}
