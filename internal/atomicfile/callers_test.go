package atomicfile

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestOneCommitPath: outside delta/, layerfs/ and agent/ (their owners'
// packages), every file is published through this package: a hand-written
// temp → fsync → rename elsewhere is how cmd/skiff's diff and sign came to
// skip the directory fsync. The test fails on any os.Rename call in
// cmd/, transport/ and internal/ but here.
func TestOneCommitPath(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	for _, top := range []string{"cmd", "transport", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" || path == filepath.Join(root, "internal", "atomicfile") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "os" && sel.Sel.Name == "Rename" {
					t.Errorf("%s: os.Rename: publish through atomicfile (Create/Commit, Write, Rename)", fset.Position(sel.Pos()))
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
