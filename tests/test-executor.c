/* placeholder: tests for executor are being written */
int main(void) {
        return 77;
}
