#include "test.h"
int main(void) { CHECK(0); return test_finish("placeholder"); }
