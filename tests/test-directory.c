/* placeholder: tests for directory are being written */
int main(void) {
        return 77;
}
