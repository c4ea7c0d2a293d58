// The program of each layering check (src/CMakeLists.txt, coatnet_link_check): it only has to
// link. A library's objects, all of them, with the libraries it declares and nothing else.
int main() {
  return 0;
}
