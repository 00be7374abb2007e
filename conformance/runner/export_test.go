package runner

// FillVerdict exposes the comparison of a cell's kernel records with the
// deciders explain names.
var FillVerdict = fillVerdict
