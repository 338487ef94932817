// Package corpus turns the benchmark corpus's layer tars into real images.
//
// The corpus script writes uncompressed layer tars to
// $SKIFF_CORPUS/layers/<pair>/{old,new}.tar for the pairs in Pairs
// ("os", "toolchain", "app", "npm", "apt", "python", "goarm64", "armapp",
// "armv7app", "goamd64", "debarm64", "debarm64up"). BuildImages assembles each
// pair into two images and writes them the ways images reach skiff in practice:
//
//	images/<pair>/old.tar, new.tar   docker-archive, gzip layers (default level, like Docker)
//	images/<pair>/old.oci, new.oci   OCI layout, gzip layers at BestSpeed (like a crane push)
//	images/os/new-resaved.tar        new.tar as `docker save` writes it: uncompressed
//	                                 layers, metadata members first, other member mtimes
//
// The "os", "apt", "debarm64" and "debarm64up" images are one rootfs layer
// each (a rebuilt base image); "toolchain", "app", "npm", "python" and the node_exporter
// pairs "goarm64", "armapp", "armv7app" and "goamd64" put their layer on top
// of the old os layer, so only the top layer changes. Every image config says
// linux/amd64, the arm ones too (what they measure is their arm content).
// Output is deterministic and cached: a pair is rebuilt only when an output
// is missing or older than an input, or with WithForce.
package corpus
