/* placeholder: tests for store are being written */
int main(void) {
        return 77;
}
