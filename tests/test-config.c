/* placeholder: tests for config are being written */
int main(void) {
        return 77;
}
